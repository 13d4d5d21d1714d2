"""`fetch_adapter` through the local transport: real `python3` and `tar` subprocesses, a real run folder.

The run folder is fabricated the way the payload leaves it (adapter files, `adapter/manifest.json` written
by `remote_payload.manifest`, `run.json` with status "succeeded"); the SSH variants live in
test_fetch_ssh.py and reuse these helpers.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from orchestrator.errors import CheckFailed, InputError, RemoteError
from orchestrator.fetch import fetch_adapter
from orchestrator.fetch.receive import receive
from orchestrator.inventory import Instance
from orchestrator.transport.local import LocalProcess, LocalTransport

MB = 1 << 20
ADAPTER = {  # name -> size; the big ones stand in for LoRA weights
    "adapter_config.json": 700,
    "tokenizer_config.json": 3_000,
    "special_tokens_map.json": 400,
    "payload_meta.json": 900,
    "adapter_model.safetensors": 3 * MB,
    "optimizer_shard.bin": 2 * MB + 123,
    "tokenizer.json": 1 * MB + 7,
}


# ------------------------------------------------------------------------------------------ helpers


def make_run(run_dir: Path, files: dict[str, int] | None = None, *, status: str = "succeeded",
             seed: int = 0, exit_code: int | None = 0) -> Path:
    """A finished run folder as the payload and supervise.py leave it; random bytes, computed manifest."""
    from remote_payload.manifest import write_manifest

    files = ADAPTER if files is None else files
    adapter = run_dir / "adapter"
    adapter.mkdir(parents=True, exist_ok=True)
    rnd = __import__("random").Random(seed)
    for name, size in files.items():
        path = adapter / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rnd.randbytes(size))
    write_manifest(adapter)
    (run_dir / "run.json").write_text(json.dumps({"status": status, "job": {"job": "demo"}}) + "\n")
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps({"step": i, "loss": 2.0 / (i + 1)}) + "\n"
                                                   for i in range(50)))
    (run_dir / "eval.json").write_text(json.dumps({"ratio": 3.4, "gate": 3.0, "passed": True}) + "\n")
    if exit_code is not None:
        (run_dir / "exit_code").write_text(json.dumps({"exit_code": exit_code, "stopped": False}) + "\n")
    (run_dir / "supervise.json").write_text(json.dumps({"run_id": run_dir.name, "job": "demo", "started_at": 1.0}))
    (run_dir / "pid").write_text("999999999\n")
    (run_dir / "log").write_text("training...\n")
    for folder, _dirs, names in os.walk(run_dir):
        os.chmod(folder, 0o755)
        for n in names:
            os.chmod(os.path.join(folder, n), 0o644)
    return run_dir


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_fetched(dest: Path, run_dir: Path) -> None:
    """dest holds exactly the run's adapter, manifest and records, byte for byte."""
    want = sorted(["run.json", "metrics.jsonl", "eval.json"] +
                  [f"adapter/{p.relative_to(run_dir / 'adapter').as_posix()}"
                   for p in (run_dir / "adapter").rglob("*") if p.is_file()])
    got = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert got == want
    for rel in want:
        assert sha256(dest / rel) == sha256(run_dir / rel), rel


def leftovers(job_dir: Path) -> list[str]:
    """What is in DEST/<job>/ besides the lock file."""
    return sorted(p.name for p in job_dir.iterdir() if not p.name.endswith(".lock")) if job_dir.exists() else []


def corrupt(path: Path, at: int = 1000) -> None:
    """Flip one byte, keeping the size: only the sha256 can tell."""
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


class DroppingTransport(LocalTransport):
    """The local transport whose streamed command (the tar) is SIGKILLed once `after` bytes were read."""

    def __init__(self, name: str, after: int):
        super().__init__(name)
        self.after = after

    def open(self, argv, *, env=None, cwd=None):
        proc = super().open(argv, env=env, cwd=cwd)
        return _KilledAfter(proc, self.after) if argv[0] == "tar" else proc


class _KilledAfter:
    def __init__(self, proc: LocalProcess, after: int):
        self._proc, self._left = proc, after

    def read(self, n: int = 65536) -> bytes:
        if self._left <= 0:
            if self._proc._p.poll() is None:
                self._proc._p.kill()           # the real tar process, by its pid
                self._proc._p.wait()
            return self._proc.read(n)          # what was already in the pipe (<= 64 KiB), then EOF
        data = self._proc.read(min(n, self._left))
        self._left -= len(data)
        return data

    def __getattr__(self, name):
        return getattr(self._proc, name)


@pytest.fixture
def run_dir(tmp_path) -> Path:
    return make_run(tmp_path / "instance" / "work" / "runs" / "demo-20250101-000000")


@pytest.fixture
def dest(tmp_path) -> Path:
    return tmp_path / "adapters"


def local_instance(run_dir: Path) -> Instance:
    """The local instance whose work dir holds `run_dir` (WORK/runs/<run id>)."""
    work = Path(run_dir).parent.parent
    return Instance(name="local", transport="local", work_dir=str(work), models_dir=str(work.parent / "models"),
                    python=sys.executable)


def live_process(run_dir: Path) -> subprocess.Popen:
    """A process that passes for the run's supervisor: alive, its command line naming the run."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "supervise.py", str(run_dir)])
    (run_dir / "pid").write_text(f"{proc.pid}\n")
    return proc


def with_payload(transport, run_dir: Path):
    """The transport, once the payload is on the instance (as after any deploy): fetches then cost 2 trips."""
    from orchestrator.remote import Remote

    Remote(transport, local_instance(run_dir)).ensure_payload()
    return transport


def fetch(transport, run_dir: Path, dest: Path, **kw):
    return fetch_adapter(transport, local_instance(run_dir), str(run_dir), dest, job="demo", run_id=run_dir.name,
                         progress=kw.pop("progress", False), **kw)


class NoBar:
    def advance(self, n: int) -> None:
        pass


# -------------------------------------------------------------------------------------------- tests


def test_a_finished_run_is_fetched_into_dest_job_run_id_with_every_file_verified(run_dir, dest):
    transport = with_payload(LocalTransport("local"), run_dir)
    result = fetch(transport, run_dir, dest, progress=True)
    final = dest / "demo" / run_dir.name
    assert result.dest == final and result.status == "fetched"
    assert_fetched(final, run_dir)
    assert leftovers(dest / "demo") == [run_dir.name]          # the partial folder was renamed away
    assert result.skipped == []
    assert result.bytes == sum((run_dir / f).stat().st_size for f in result.transferred)
    assert result.total_bytes == sum((final / f).stat().st_size for f in result.files)
    doc = json.loads(json.dumps(result.to_json()))
    assert doc["verified"] is True and doc["dest"] == str(final) and doc["round_trips"] == 2
    assert doc["mb_per_s"] > 0 and "adapter/adapter_model.safetensors" in doc["files"]


def test_a_fetch_takes_two_round_trips_one_inspection_and_one_stream(run_dir, dest):
    transport = with_payload(LocalTransport("local"), run_dir)
    before = transport.commands_run
    fetch(transport, run_dir, dest)
    assert transport.commands_run - before == 2


def test_a_second_fetch_leaves_the_verified_destination_alone_after_one_round_trip(run_dir, dest):
    fetch(LocalTransport("local"), run_dir, dest)
    final = dest / "demo" / run_dir.name
    before = {p: p.stat().st_mtime_ns for p in final.rglob("*")}
    transport = LocalTransport("local")
    result = fetch(transport, run_dir, dest)
    assert result.status == "present" and result.bytes == 0 and result.transferred == []
    assert transport.commands_run == 1
    assert {p: p.stat().st_mtime_ns for p in final.rglob("*")} == before
    assert "already fetched and verified" in result.summary()


def test_a_corrupted_file_on_the_instance_is_refused_naming_it_and_both_hashes(run_dir, dest):
    weights = run_dir / "adapter" / "adapter_model.safetensors"
    good = sha256(weights)
    corrupt(weights)
    with pytest.raises(CheckFailed) as failure:
        fetch(LocalTransport("local"), run_dir, dest)
    text = str(failure.value)
    assert "adapter/adapter_model.safetensors" in text and "corrupted" in text
    assert good in text and sha256(weights) in text
    assert not (dest / "demo" / run_dir.name).exists()         # nothing under the final name
    partial = dest / "demo" / f".{run_dir.name}.partial"
    assert not (partial / "adapter" / "adapter_model.safetensors").exists()
    assert (partial / "adapter" / "tokenizer.json").exists()   # verified files are kept for the next try


def test_a_file_whose_size_differs_from_the_manifest_is_refused_before_anything_is_transferred(run_dir, dest):
    with open(run_dir / "adapter" / "tokenizer.json", "ab") as f:
        f.write(b"x")
    transport = with_payload(LocalTransport("local"), run_dir)
    before = transport.commands_run
    with pytest.raises(CheckFailed, match=r"tokenizer.json is \d+ bytes on the instance, the manifest says"):
        fetch(transport, run_dir, dest)
    assert transport.commands_run - before == 1
    assert leftovers(dest / "demo") == []


@pytest.mark.parametrize("change, expected", [
    ("missing", r"missing: adapter/optimizer_shard.bin"),
    ("extra", r"not in the manifest: adapter/stray.bin"),
    ("symlink", r"adapter/link.json is not a regular file"),
])
def test_an_adapter_folder_with_missing_extra_or_linked_files_is_refused(run_dir, dest, change, expected):
    adapter = run_dir / "adapter"
    if change == "missing":
        (adapter / "optimizer_shard.bin").unlink()
    elif change == "extra":
        (adapter / "stray.bin").write_bytes(b"?")
    else:
        (adapter / "link.json").symlink_to("/etc/passwd")
    with pytest.raises(CheckFailed, match=expected):
        fetch(LocalTransport("local"), run_dir, dest)
    assert not (dest / "demo" / run_dir.name).exists()


def test_a_run_still_running_is_refused_with_what_to_do(run_dir, dest):
    (run_dir / "run.json").write_text(json.dumps({"status": "running"}))
    (run_dir / "exit_code").unlink()
    supervisor = live_process(run_dir)
    try:
        with pytest.raises(CheckFailed) as failure:
            fetch(LocalTransport("local"), run_dir, dest)
    finally:
        supervisor.kill()
        supervisor.wait()
    assert "still running" in str(failure.value) and "--follow" in failure.value.hint
    assert not (dest / "demo").exists() or leftovers(dest / "demo") == []


def test_a_run_whose_process_is_gone_without_an_exit_code_is_refused_as_lost(run_dir, dest):
    (run_dir / "run.json").write_text(json.dumps({"status": "running"}))
    (run_dir / "exit_code").unlink()
    (run_dir / "pid").write_text("999999999\n")
    with pytest.raises(CheckFailed, match="lost") as failure:
        fetch(LocalTransport("local"), run_dir, dest)
    assert "--resume" in failure.value.hint


def test_a_failed_run_is_refused_with_its_error(run_dir, dest):
    (run_dir / "run.json").write_text(json.dumps({"status": "failed", "error": {
        "type": "OutOfMemoryError", "message": "CUDA out of memory"}}))
    (run_dir / "exit_code").write_text(json.dumps({"exit_code": 1}))
    with pytest.raises(CheckFailed, match="failed.*CUDA out of memory") as failure:
        fetch(LocalTransport("local"), run_dir, dest)
    assert "orch logs --run" in failure.value.hint


def test_a_stopped_run_is_refused(run_dir, dest):
    (run_dir / "run.json").write_text(json.dumps({"status": "running"}))
    (run_dir / "exit_code").write_text(json.dumps({"exit_code": -15, "stopped": True}))
    with pytest.raises(CheckFailed, match="was stopped"):
        fetch(LocalTransport("local"), run_dir, dest)


def test_a_run_without_a_manifest_is_refused_as_incomplete(run_dir, dest):
    (run_dir / "adapter" / "manifest.json").unlink()
    with pytest.raises(CheckFailed, match=r"adapter is incomplete: .*adapter/manifest.json is missing"):
        fetch(LocalTransport("local"), run_dir, dest)


def test_a_run_that_does_not_exist_is_refused_naming_the_instance_and_the_folder(tmp_path, dest):
    missing = tmp_path / "runs" / "demo-nope"
    with pytest.raises(CheckFailed) as failure:
        fetch(LocalTransport("box-1"), missing, dest)
    assert "box-1" in str(failure.value) and str(missing) in str(failure.value)
    assert "orch status" in failure.value.hint


def test_a_manifest_naming_a_path_outside_the_adapter_is_refused(run_dir, dest):
    manifest = run_dir / "adapter" / "manifest.json"
    doc = json.loads(manifest.read_text())
    doc["files"][0]["path"] = "../run.json"
    manifest.write_text(json.dumps(doc))
    with pytest.raises(CheckFailed, match=r"not a plain relative path inside adapter/"):
        fetch(LocalTransport("local"), run_dir, dest)


@pytest.mark.parametrize("bad", ["../x", "a/b", ".hidden", ""])
def test_a_job_or_run_id_that_is_not_a_plain_folder_name_is_bad_input(run_dir, dest, bad):
    with pytest.raises(InputError):
        fetch_adapter(LocalTransport("local"), None, str(run_dir), dest, job=bad, run_id="r", progress=False)


def test_an_interrupted_fetch_resumes_and_transfers_only_what_was_missing(run_dir, dest):
    # Manifest order is alphabetical: adapter_config, adapter_model (3 MB), optimizer_shard (2 MB), ...
    # The tar dies 4 MB in: adapter_model is complete, optimizer_shard half-written, the rest absent.
    with pytest.raises(RemoteError) as failure:
        fetch(DroppingTransport("local", after=4 * MB), run_dir, dest)
    assert "interrupted" in str(failure.value) and "again" in failure.value.hint
    final = dest / "demo" / run_dir.name
    partial = dest / "demo" / f".{run_dir.name}.partial"
    assert not final.exists() and (partial / "adapter" / "adapter_model.safetensors").exists()

    transport = LocalTransport("local")
    result = fetch(transport, run_dir, dest)
    assert result.status == "resumed" and transport.commands_run == 2
    assert_fetched(final, run_dir)
    assert "adapter/adapter_config.json" in result.skipped
    assert "adapter/adapter_model.safetensors" in result.skipped
    assert "adapter/optimizer_shard.bin" in result.transferred
    assert "adapter/adapter_model.safetensors" not in result.transferred
    assert result.bytes < 3 * MB + 200_000                    # the 3 MB weights did not travel again
    assert not partial.exists()


def test_a_damaged_local_copy_is_repaired_by_fetching_only_the_damaged_file(run_dir, dest):
    fetch(LocalTransport("local"), run_dir, dest)
    final = dest / "demo" / run_dir.name
    corrupt(final / "adapter" / "tokenizer.json")
    result = fetch(LocalTransport("local"), run_dir, dest)
    assert result.status == "resumed"
    assert [f for f in result.transferred if f.startswith("adapter/") and
            not f.endswith("manifest.json")] == ["adapter/tokenizer.json"]
    assert_fetched(final, run_dir)


def test_a_new_adapter_for_the_same_run_replaces_the_old_copy_which_is_kept_aside(run_dir, dest):
    fetch(LocalTransport("local"), run_dir, dest)
    make_run(run_dir, {"adapter_model.safetensors": 100_000, "adapter_config.json": 500}, seed=7)
    for stale in ("optimizer_shard.bin", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                  "payload_meta.json"):
        (run_dir / "adapter" / stale).unlink()
    from remote_payload.manifest import write_manifest

    write_manifest(run_dir / "adapter")
    result = fetch(LocalTransport("local"), run_dir, dest)
    assert_fetched(result.dest, run_dir)
    assert result.set_aside is not None and result.set_aside.name.startswith(f"{run_dir.name}.superseded-")
    assert (result.set_aside / "adapter" / "tokenizer.json").exists()


def test_an_archive_member_outside_what_was_asked_for_is_refused(tmp_path):
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tf:
        for name in ("adapter/manifest.json", "../../escape.txt"):
            info = tarfile.TarInfo(name)
            info.size = 2
            tf.addfile(info, io.BytesIO(b"{}"))
    partial = tmp_path / "partial"
    partial.mkdir()

    class Cat(LocalTransport):
        def open(self, argv, **kw):
            return super().open(["cat", str(evil)])

    with pytest.raises(CheckFailed, match="unexpected archive member '../../escape.txt'"):
        receive(Cat("local"), str(tmp_path), ["adapter/manifest.json"], partial, "local: run r", stall_timeout=30,
                bar=NoBar(), done_before=0, n_entries=1, total=4)
    assert not (tmp_path.parent / "escape.txt").exists()


def test_a_symlink_member_in_the_stream_is_refused(tmp_path):
    evil = tmp_path / "link.tar"
    with tarfile.open(evil, "w") as tf:
        info = tarfile.TarInfo("adapter/manifest.json")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info)
    partial = tmp_path / "partial"
    partial.mkdir()

    class Cat(LocalTransport):
        def open(self, argv, **kw):
            return super().open(["cat", str(evil)])

    with pytest.raises(CheckFailed, match="link or special file"):
        receive(Cat("local"), str(tmp_path), ["adapter/manifest.json"], partial, "local: run r", stall_timeout=30,
                bar=NoBar(), done_before=0, n_entries=1, total=0)
    assert not (partial / "adapter" / "manifest.json").exists()


def test_a_file_name_with_spaces_and_shell_characters_travels_as_an_argument(tmp_path, dest):
    run_dir = make_run(tmp_path / "runs" / "demo-1", {"we ird $(touch pwned) ;name.json": 10,
                                                      "sub dir/x.bin": 20})
    result = fetch(LocalTransport("local"), run_dir, dest)
    assert_fetched(result.dest, run_dir)
    assert not Path("pwned").exists() and not (tmp_path / "pwned").exists()


def test_an_archive_member_sent_twice_is_refused(tmp_path):
    twice = tmp_path / "twice.tar"
    with tarfile.open(twice, "w") as tf:
        for body in (b"{}", b"[]"):
            info = tarfile.TarInfo("adapter/manifest.json")
            info.size = len(body)
            tf.addfile(info, io.BytesIO(body))
    partial = tmp_path / "partial"
    partial.mkdir()

    class Cat(LocalTransport):
        def open(self, argv, **kw):
            return super().open(["cat", str(twice)])

    with pytest.raises(CheckFailed, match="unexpected archive member 'adapter/manifest.json'"):
        receive(Cat("local"), str(tmp_path), ["adapter/manifest.json"], partial, "local: run r", stall_timeout=30,
                bar=NoBar(), done_before=0, n_entries=1, total=4)
