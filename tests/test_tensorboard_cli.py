"""`orch tensorboard` through the CLI: TensorBoard on the instance (the real loopback sshd) reached through the
port forward, serving a real run's event files; ended by Ctrl-C (SIGINT), which ends it on the instance too;
and `--local` over a run `orch fetch-adapter` brought back with its tensorboard/.

The run is the session's short tiny-movielens run (tests/fixtures/classification_project.py), trained once; on
the sshd box its tensorboard/ folder is put where a run there would have written it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.fixtures.sshd import write_inventory

pytestmark = pytest.mark.timeout(600)


def start(cwd: Path, *args: str, env: dict | None = None) -> tuple[subprocess.Popen, dict]:
    """`orch tensorboard ... --json` in the background, and the one JSON document it prints once serving."""
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "tensorboard", *args, "--json"], cwd=cwd,
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    text = ""
    while True:
        line = proc.stdout.readline()
        if not line:
            proc.wait(30)
            raise AssertionError(f"orch tensorboard exited {proc.returncode} before serving: {text}"
                                 f"{proc.stderr.read()[-3000:]}")
        text += line
        try:
            return proc, json.loads(text)
        except ValueError:
            continue


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def served_runs(url: str, run_id: str, timeout: float = 90.0) -> dict:
    """TensorBoard's scalar tags by run, once it has loaded `run_id`'s event files (it loads them in the
    background after it starts serving)."""
    deadline = time.monotonic() + timeout
    while True:
        runs = get_json(url + "data/runs")
        tags = get_json(url + "data/plugin/scalars/tags")
        if any(name.startswith(run_id) and tags.get(name) for name in runs):
            return tags
        if time.monotonic() > deadline:
            raise AssertionError(f"TensorBoard at {url} never served {run_id}: runs {runs}, tags {tags}")
        time.sleep(0.5)


def interrupt(proc: subprocess.Popen) -> tuple[int, str]:
    """Ctrl-C: SIGINT to orch alone (a terminal would also signal a local board; the remote one gets none)."""
    proc.send_signal(signal.SIGINT)
    code = proc.wait(60)
    return code, proc.stderr.read()


def wait_gone(pid: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists():
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] if Path(
            f"/proc/{pid}/stat").exists() else "gone"
        if state in ("Z", "gone"):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the board (pid {pid}) is still running after orch ended")
        time.sleep(0.1)


def refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return False
    except OSError:
        return True


@pytest.fixture
def ssh_box(sshd, instance_venv, trained_classification, tmp_path):
    """An inventory whose instance is the loopback sshd, with the trained run's tensorboard/ in its runs dir."""
    entry = sshd.instance(f"tensorboard-{uuid.uuid4().hex[:8]}", gpu=None, python_env=str(instance_venv))
    runs = Path(entry["work_dir"]) / "runs" / trained_classification.run_id
    shutil.copytree(trained_classification.run_dir / "tensorboard", runs / "tensorboard")
    for folder in (runs.parent, runs, runs / "tensorboard"):
        os.chown(folder, sshd.account.pw_uid, sshd.account.pw_gid)
    for path in (runs / "tensorboard").iterdir():
        os.chown(path, sshd.account.pw_uid, sshd.account.pw_gid)
    job = {"instance": "box", "recipe": "tiny-movielens", "dataset": str(ROOT / "training_data" /
                                                                          "movielens_demo_train.jsonl"),
           "weights": "s3://orch-classification/models/tiny-qwen3-classifier/"}
    write_inventory(tmp_path, {"box": entry}, {"movielens": job}, env={})
    return tmp_path


def test_tensorboard_on_the_instance_is_reached_through_the_forwarded_port_and_ends_on_ctrl_c(
        ssh_box, trained_classification, sshd):
    run_id = trained_classification.run_id
    before = sshd.connections()
    proc, doc = start(ssh_box, "movielens", "--port", "0")
    try:
        assert doc["ok"] and doc["where"] == "box" and doc["runs"] == [run_id]
        tags = served_runs(doc["url"], run_id)
        scalars = next(v for k, v in tags.items() if k.startswith(run_id))
        assert {"eval/f1", "eval/accuracy", "train/loss"} <= set(scalars)      # the run's own event files
        # one SSH connection carries the install check, the board and every forwarded HTTP request
        assert sshd.connections() - before == 1
    finally:
        code, stderr = interrupt(proc)
    assert code == 0, stderr[-2000:]
    assert "stopping TensorBoard on box" in stderr
    wait_gone(doc["remote_pid"])                      # closing its stdin ended it on the instance
    assert refuses(doc["local_port"]) and refuses(doc["remote_port"])


def test_a_run_without_tensorboard_logs_is_refused_with_exit_2(ssh_box):
    r = subprocess.run([sys.executable, "-m", "orchestrator", "tensorboard", "--instance", "box", "--run",
                        "movielens-20000101-000000-0000"], cwd=ssh_box, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "no TensorBoard logs for run(s) movielens-20000101-000000-0000" in r.stderr


def test_fetch_brings_tensorboard_back_and_local_serves_the_fetched_runs(trained_classification, tmp_path):
    t = trained_classification
    dest = tmp_path / "adapters"
    r = t.project.orch("fetch-adapter", "movielens", "--dest", str(dest), "--json")
    assert r.code == 0, r.stderr[-2000:]
    fetched = dest / "movielens" / t.run_id
    events = sorted(p.name for p in (t.run_dir / "tensorboard").iterdir())
    assert events and sorted(p.name for p in (fetched / "tensorboard").iterdir()) == events
    for name in events:
        assert (fetched / "tensorboard" / name).read_bytes() == (t.run_dir / "tensorboard" / name).read_bytes()

    # a copy fetched before tensorboard/ travelled gets it, without the adapter crossing the network again
    shutil.rmtree(fetched / "tensorboard")
    again = t.project.orch("fetch-adapter", "movielens", "--dest", str(dest), "--json").json()
    assert again["status"] == "resumed" and all(m.startswith("adapter/") for m in again["skipped"])
    assert {f"tensorboard/{n}" for n in events} <= set(again["transferred"])
    assert not any(m.startswith("adapter/") and not m.endswith("manifest.json") for m in again["transferred"])
    assert t.project.orch("fetch-adapter", "movielens", "--dest", str(dest), "--json").json()["status"] == "present"

    proc, doc = start(t.project.root, "movielens", "--local", str(dest), "--port", "0")
    try:
        assert doc["runs"] == [t.run_id]
        served_runs(doc["url"], t.run_id)
    finally:
        code, stderr = interrupt(proc)
    assert code == 0, stderr[-2000:]
    wait_gone(doc["remote_pid"])
    assert refuses(doc["local_port"])
