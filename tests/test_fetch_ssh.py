"""`fetch_adapter` over a real OpenSSH sshd on 127.0.0.1 (tests/fixtures/sshd.py), through the SSH transport."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from orchestrator.errors import CheckFailed, RemoteError
from orchestrator.fetch import fetch_adapter
from orchestrator.inventory import Instance
from orchestrator.remote import Remote
from orchestrator.transport import connect
from tests.fixtures.sshd import sshd  # noqa: F401  (the session fixture)
from tests.test_fetch_local import MB, assert_fetched, corrupt, leftovers, live_process, make_run, sha256

ROOT = Path(__file__).resolve().parent.parent


def ssh_instance(server, name: str) -> Instance:
    work, models = server.remote_dirs(name)
    return Instance(name=name, transport="ssh", host=server.host, port=server.port, user=server.user,
                    key=str(server.client_key), known_hosts=str(server.known_hosts), work_dir=work,
                    models_dir=models, imds_url=None, connect_timeout=5)


@pytest.fixture
def box(sshd):  # noqa: F811
    """(instance, a finished run folder in its work dir) on the loopback sshd."""
    instance = ssh_instance(sshd, f"fetch-{uuid.uuid4().hex[:8]}")
    run_dir = make_run(Path(instance.work_dir) / "runs" / "demo-20250101-000000")
    with connect(instance) as transport:          # the payload is on the box, as after any deploy
        Remote(transport, instance).ensure_payload()
    yield instance, run_dir
    shutil.rmtree(Path(instance.work_dir).parent, ignore_errors=True)


def fetch(instance, run_dir: Path, dest: Path, transport=None):
    own = transport is None
    transport = transport or connect(instance)
    try:
        return fetch_adapter(transport, instance, str(run_dir), dest, job="demo", run_id=run_dir.name,
                             progress=False), transport
    finally:
        if own:
            transport.close()


class DropAfter:
    """A real SSH transport whose connection is closed (socket and all) once `after` streamed bytes arrived.

    What paramiko had already received is still read (as after a real drop); nothing more arrives, and the
    stream ends early as long as more than one SSH window (what the server may send unacknowledged) is left.
    """

    def __init__(self, transport, after: int):
        self._t, self.after = transport, after

    def open(self, argv, **kw):
        proc = self._t.open(argv, **kw)
        return _Dropping(proc, self._t, self.after) if argv[0] == "tar" else proc

    def __getattr__(self, name):
        return getattr(self._t, name)


class _Dropping:
    def __init__(self, proc, transport, after):
        self._proc, self._transport, self._left = proc, transport, after

    def read(self, n=1 << 20):
        if self._left <= 0:
            if self._transport is not None:
                self._transport.close()        # the network goes away mid-stream
                self._transport = None
            return self._proc.read(n)
        data = self._proc.read(min(n, self._left))
        self._left -= len(data)
        return data

    def __getattr__(self, name):
        return getattr(self._proc, name)


def test_a_finished_run_is_fetched_over_ssh_with_one_connection_and_two_commands(box, sshd, tmp_path):  # noqa: F811
    instance, run_dir = box
    connections, sessions = sshd.connections(), sshd.sessions()
    result, transport = fetch(instance, run_dir, tmp_path / "adapters")
    assert_fetched(result.dest, run_dir)
    assert result.status == "fetched" and result.round_trips == 2 and transport.commands_run == 2
    # sshd logs each connection and session before it serves it: the counts are final once the fetch is done
    assert sshd.wait_for(lambda: sshd.connections() - connections, 1) == 1
    assert sshd.wait_for(lambda: sshd.sessions() - sessions, 2) == 2


def test_a_corrupted_file_on_the_instance_is_refused_over_ssh(box, tmp_path):
    instance, run_dir = box
    weights = run_dir / "adapter" / "adapter_model.safetensors"
    good = sha256(weights)
    corrupt(weights, at=2 * MB)
    dest = tmp_path / "adapters"
    with pytest.raises(CheckFailed) as failure:
        fetch(instance, run_dir, dest)
    text = str(failure.value)
    assert instance.name in text and "adapter/adapter_model.safetensors" in text and "corrupted" in text
    assert good in text and sha256(weights) in text
    assert not (dest / "demo" / run_dir.name).exists()


def test_a_run_still_running_is_refused_over_ssh(box, tmp_path):
    instance, run_dir = box
    (run_dir / "run.json").write_text(json.dumps({"status": "running"}))
    (run_dir / "exit_code").unlink()
    supervisor = live_process(run_dir)   # owned by another user than the login: still seen as alive
    try:
        with pytest.raises(CheckFailed, match="still running"):
            fetch(instance, run_dir, tmp_path / "adapters")
    finally:
        supervisor.kill()
        supervisor.wait()


def test_a_dropped_ssh_connection_mid_fetch_then_a_rerun_completes_transferring_only_what_was_missing(
        sshd, tmp_path):  # noqa: F811
    from orchestrator.transport import ssh

    instance = ssh_instance(sshd, f"fetch-{uuid.uuid4().hex[:8]}")
    last = getattr(ssh, "WINDOW_SIZE", 64 * MB) + 8 * MB     # more than can be in flight when it drops
    run_dir = make_run(Path(instance.work_dir) / "runs" / "demo-dropped",
                       {"adapter_config.json": 700, "adapter_model.safetensors": 3 * MB,
                        "optimizer_shard.bin": 2 * MB, "zz_last_shard.bin": last})
    dest = tmp_path / "adapters"
    try:
        with pytest.raises(RemoteError) as failure:
            fetch(instance, run_dir, dest, transport=DropAfter(connect(instance), after=4 * MB))
        assert "interrupted" in str(failure.value) and "resumes" in failure.value.hint
        partial = dest / "demo" / f".{run_dir.name}.partial"
        assert (partial / "adapter" / "adapter_model.safetensors").stat().st_size == 3 * MB
        assert not (dest / "demo" / run_dir.name).exists()

        result, transport = fetch(instance, run_dir, dest)
        assert result.status == "resumed" and transport.commands_run == 2
        assert_fetched(result.dest, run_dir)
        assert {"adapter/adapter_config.json", "adapter/adapter_model.safetensors"} <= set(result.skipped)
        assert "adapter/adapter_model.safetensors" not in result.transferred
        assert "adapter/zz_last_shard.bin" in result.transferred
        assert result.bytes < last + 2 * MB + 200_000          # never the 3 MB weights again
        assert leftovers(dest / "demo") == [run_dir.name]
    finally:
        shutil.rmtree(Path(instance.work_dir).parent, ignore_errors=True)


def test_a_fetch_whose_controller_is_killed_mid_transfer_resumes_on_the_next_run(sshd, tmp_path):  # noqa: F811
    instance = ssh_instance(sshd, f"fetch-{uuid.uuid4().hex[:8]}")
    run_dir = make_run(Path(instance.work_dir) / "runs" / "demo-killed",
                       {"adapter_config.json": 600, "adapter_model.safetensors": 160 * MB, "tokenizer.json": 5000})
    dest = tmp_path / "adapters"
    child = subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps({
        "instance": {k: getattr(instance, k) for k in ("name", "transport", "host", "port", "user", "key",
                                                      "known_hosts", "work_dir", "models_dir")},
        "run_dir": str(run_dir), "dest": str(dest)})], cwd=ROOT, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE)
    weights = dest / "demo" / f".{run_dir.name}.partial" / "adapter" / "adapter_model.safetensors"
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and child.poll() is None:
            if weights.exists() and weights.stat().st_size > 2 * MB:
                break
            time.sleep(0.005)
        assert child.poll() is None, f"the fetch ended before it could be killed: {child.stderr.read()!r}"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(30)
    assert not (dest / "demo" / run_dir.name).exists()

    try:
        result, _ = fetch(instance, run_dir, dest)            # its lock died with it
        assert result.status == "resumed" and "adapter/adapter_config.json" in result.skipped
        assert_fetched(result.dest, run_dir)
    finally:
        shutil.rmtree(Path(instance.work_dir).parent, ignore_errors=True)


_CHILD = """
import json, sys
from pathlib import Path
from orchestrator.fetch import fetch_adapter
from orchestrator.inventory import Instance
from orchestrator.remote import Remote
from orchestrator.transport import connect
args = json.loads(sys.argv[1])
instance = Instance(**args["instance"], imds_url=None, connect_timeout=5)
transport = connect(instance)
fetch_adapter(transport, instance, args["run_dir"], Path(args["dest"]), job="demo",
              run_id=Path(args["run_dir"]).name, progress=False)
"""


def test_a_second_fetch_over_ssh_is_idempotent(box, tmp_path):
    instance, run_dir = box
    dest = tmp_path / "adapters"
    first, _ = fetch(instance, run_dir, dest)
    second, transport = fetch(instance, run_dir, dest)
    assert second.status == "present" and second.bytes == 0 and transport.commands_run == 1
    assert second.dest == first.dest
    assert_fetched(second.dest, run_dir)
