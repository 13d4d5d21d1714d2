"""SSH going away under a running command, through the CLI a user runs, against a private real sshd:
following a run survives the server going down and coming back (a failed reconnect is retried, not fatal),
and a fetch whose connection is cut says why and resumes on the next run."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from orchestrator.inventory import Instance
from orchestrator.remote import Remote
from orchestrator.transport import connect
from tests.conftest import ROOT, orch
from tests.fixtures.sshd import write_inventory
from tests.test_fetch_local import MB, make_run

pytestmark = pytest.mark.timeout(300)
RUN_ID = "faults-20260101-000000-abcd"


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


@pytest.fixture
def box(sshd_factory, tmp_path):
    server = sshd_factory(gpu_case="none")
    entry = server.instance("box", gpu=None)
    inventory = write_inventory(tmp_path, {"box": entry}, {"faults": {
        "instance": "box", "recipe": "tiny-verbosity", "weights": "s3://orch-faults/tiny/",
        "dataset": str(ROOT / "training_data" / "verbosity_demo.jsonl")}})
    instance = Instance(name="box", **{k: v for k, v in entry.items() if k != "expect"})
    return server, instance, inventory


def cut(server) -> None:
    """The server goes away: its listener stops and every connection it serves is killed."""
    pids = server.connection_pids()
    server.stop()
    for pid in pids:
        server.drop(pid)


class Reader:
    """Collects a child process's stdout and stderr as they arrive."""

    def __init__(self, proc: subprocess.Popen):
        self.proc, self.out, self.err = proc, [], []
        for stream, sink in ((proc.stdout, self.out), (proc.stderr, self.err)):
            threading.Thread(target=lambda s=stream, k=sink: k.extend(iter(s.readline, "")), daemon=True).start()

    @property
    def text(self) -> str:
        return "".join(self.out)


def test_following_a_run_survives_the_server_going_down_and_back_and_shows_each_line_once(box, tmp_path):
    server, instance, inventory = box
    with connect(instance) as transport:
        remote = Remote(transport, instance)
        run_dir = remote.layout.run(RUN_ID)
        meta = {"run_id": RUN_ID, "job": "faults", "payload": remote.payload_dir}
        started = remote.json("supervise", "start", "--run-dir", run_dir, "--lock", remote.layout.gpu_lock(0),
                              "--meta", json.dumps(meta), "--", "sh", "-c",
                              "for i in $(seq 1 60); do echo line $i; sleep 0.2; done", what="starting")
        assert started["ok"], started
    follower = subprocess.Popen([sys.executable, "-m", "orchestrator", "--inventory", str(inventory), "logs",
                                 "--instance", "box", "--run", RUN_ID, "--follow"], cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reader = Reader(follower)
    wait_until(lambda: "line 5\n" in reader.text, 60, "the first lines")
    cut(server)
    time.sleep(3)          # the outage under test: the follower's reconnects fail while the server is down
    server.start()
    assert follower.wait(120) == 0, "".join(reader.err)
    lines = [line for line in reader.text.splitlines() if line.startswith("line ")]
    assert lines == [f"line {i}" for i in range(1, 61)]
    assert (Path(run_dir) / "log").read_text().count("line 60") == 1


def test_a_fetch_whose_connection_is_cut_says_why_and_the_next_run_resumes(box, tmp_path):
    server, instance, inventory = box
    run_dir = make_run(Path(instance.work_dir) / "runs" / RUN_ID,
                       {"adapter_config.json": 700, "adapter_model.safetensors": 60 * MB,
                        "zz_tail_shard.bin": 120 * MB})
    with connect(instance) as transport:
        Remote(transport, instance).ensure_payload()
    dest = tmp_path / "adapters"
    fetch = subprocess.Popen([sys.executable, "-m", "orchestrator", "--inventory", str(inventory), "fetch-adapter",
                              "--instance", "box", "--run", RUN_ID, "--dest", str(dest)], cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tar = []   # freeze the instance's tar as soon as it starts, so the cut surely lands mid-stream
    wait_until(lambda: tar.extend(_pids(f"tar -C {run_dir}")) or tar or fetch.poll() is not None, 120,
               "the instance's tar to start")
    assert tar, "the fetch ended before its stream started"
    for pid in tar:
        os.kill(pid, signal.SIGSTOP)
    for pid in server.connection_pids():
        server.drop(pid)
    _, err = fetch.communicate(timeout=60)
    for pid in tar:      # the dropped session may already have ended it (SIGHUP to a stopped orphan, then SIGCONT)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert fetch.returncode == 1, err
    assert "interrupted" in err and "connection" in err
    assert "EOFError: )" not in err and "()" not in err
    assert "run the same command again" in err
    again = orch("--inventory", str(inventory), "fetch-adapter", "--instance", "box", "--run", RUN_ID, "--dest",
                 str(dest), "--json", cwd=tmp_path)
    assert again.code == 0, again.stderr
    assert again.json()["status"] in ("fetched", "resumed") and again.json()["verified"]


def _pids(pattern: str) -> list[int]:
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found]
