"""`orch fetch-adapter` against an instance that sends a malformed or stalled archive, or a disk that takes
fewer bytes than it is given: refused fast, failed with a clear message in bounded time, never verified by
accident -- and the rerun resumes.

The "instance" is this machine (`transport: local`); a `tar` placed first on PATH stands in for the
instance's tar, so the crafted bytes reach the real CLI exactly as a hostile box would send them.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.test_fetch_local import MB, make_run

RUN_ID = "demo-20260101-000000-ffff"
REAL_TAR = "/usr/bin/tar" if os.path.exists("/usr/bin/tar") else "/bin/tar"


@pytest.fixture
def box(tmp_path):
    work = tmp_path / "work"
    # the big file ends 4 KiB past 2 MB: with a 2 MB file-size limit its last write comes back short
    run_dir = make_run(work / "runs" / RUN_ID, {"adapter_model.safetensors": 2 * MB + 4096,
                                                "tokenizer.json": MB + 5, "adapter_config.json": 500})
    (run_dir / "supervise.json").write_text(json.dumps({"run_id": RUN_ID, "job": "demo", "started_at": 1.0}))
    (run_dir / "pid").write_text("999999")
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(f"""\
instances:
  local:
    transport: local
    work_dir: {work}
    models_dir: {tmp_path / 'models'}
    python: {sys.executable}
    imds_url: ""
    stall_timeout: 2
jobs:
  demo:
    instance: local
    recipe: tiny-verbosity
    dataset: {ROOT / 'training_data' / 'verbosity_demo.jsonl'}
    weights: s3://orch-fetch/tiny/
""")
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    return tmp_path, run_dir, bin_dir


def fake_tar(bin_dir: Path, script: str) -> dict:
    exe = bin_dir / "tar"
    exe.write_text("#!/bin/sh\n" + script)
    exe.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}


def fetch(root: Path, env: dict | None = None, timeout: float = 60, preexec=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator", "fetch-adapter", "demo", "--dest",
                           str(root / "dest"), "--json"], cwd=root, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout, preexec_fn=preexec)


def pax_stream(records: bytes) -> bytes:
    """A tar stream opening with a pax extended header holding `records` verbatim, then one member."""
    pax = tarfile.TarInfo("././@PaxHeader")
    pax.type, pax.size = tarfile.XHDTYPE, len(records)
    out = pax.tobuf(format=tarfile.USTAR_FORMAT) + records + b"\0" * (-len(records) % 512)
    member = tarfile.TarInfo("adapter/manifest.json")
    member.size = 2
    out += member.tobuf(format=tarfile.USTAR_FORMAT) + b"{}" + b"\0" * 510 + b"\0" * 1024
    return out


def pax_record(text: str) -> bytes:
    """'key=value' as a pax record with its correct length prefix."""
    body = f" {text}\n".encode()
    n = len(body) + 1
    while len(str(n).encode()) + len(body) != n:
        n += 1
    return str(n).encode() + body


@pytest.mark.parametrize("records", [b"0 path=x\n", pax_record("size=-5000"), pax_record("size=abc"),
                                     b"99999999 path=x\n"], ids=["zero-length", "negative-size", "bad-size",
                                                                 "overlong"])
def test_a_malformed_pax_header_is_refused_in_well_under_a_second(box, records):
    root, _, bin_dir = box
    stream = root / "evil.tar"
    stream.write_bytes(pax_stream(records))
    env = fake_tar(bin_dir, f'cat "{stream}"\n')
    started = time.monotonic()
    run = fetch(root, env, timeout=30)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "damaged archive" in run.stderr and "Traceback" not in run.stderr
    assert time.monotonic() - started < 15          # the CLI's own start-up included; it used to spin forever
    assert not (root / "dest" / "demo" / RUN_ID).exists()


def test_a_stream_that_stops_without_closing_fails_after_the_stall_timeout_and_the_rerun_resumes(box):
    root, run_dir, bin_dir = box
    # the first 2.5 MB of the real archive (the small files and part of the big one), then silence with the
    # connection held open
    env = fake_tar(bin_dir, f'"{REAL_TAR}" "$@" | head -c 2500000\nexec sleep 600\n')
    started = time.monotonic()
    run = fetch(root, env, timeout=60)
    elapsed = time.monotonic() - started
    assert run.returncode == 1, run.stdout + run.stderr
    assert "no data" in run.stderr and "2 s" in run.stderr and "run the same command again" in run.stderr
    assert elapsed < 30
    again = fetch(root)
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)
    assert doc["status"] == "resumed" and doc["skipped"], doc


def _limit_file_size():
    """The fetch's own process may write files of at most 2 MB: a write crossing it comes back short."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2 * MB, 2 * MB))


def test_a_disk_that_takes_fewer_bytes_than_written_fails_the_fetch_instead_of_verifying_it(box):
    root, _, _ = box
    run = fetch(root, preexec=_limit_file_size)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "adapter_model.safetensors" in run.stderr and "Traceback" not in run.stderr
    assert not (root / "dest" / "demo" / RUN_ID).exists()


def test_an_archive_cut_short_says_why_instead_of_an_empty_eof_error(box):
    root, _, bin_dir = box
    env = fake_tar(bin_dir, f'"{REAL_TAR}" "$@" | head -c 1500000\n')
    run = fetch(root, env)
    assert run.returncode == 1
    assert "EOFError: )" not in run.stderr and "()" not in run.stderr
    assert "ended early" in run.stderr or "connection" in run.stderr
