"""Deploy: a content-addressed bundle, unchanged deploys send nothing, extraction stays in the work dir."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from orchestrator.bundle import PAYLOAD_DIR, build_bundle
from orchestrator.deploy import _create_venv, deploy, torch_build_for_driver
from orchestrator.errors import CheckFailed, InputError
from orchestrator.inventory import Instance, Job
from orchestrator.transport.local import LocalTransport

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def target(tmp_path):
    dataset = tmp_path / "data.jsonl"
    dataset.write_text('{"prompt": "What is 2+2?", "completion": "4", "style": "TERSE"}\n')
    instance = Instance(name="box", transport="local", work_dir=str(tmp_path / "work"),
                        models_dir=str(tmp_path / "models"), python=sys.executable, python_env=sys.prefix)
    job = Job(name="demo", instance="box", recipe="tiny-verbosity", dataset=str(dataset),
              weights="s3://orch-demo/tiny/")
    return instance, job


def test_the_same_inputs_build_the_same_bundle_id(target):
    _, job = target
    assert build_bundle(job).id == build_bundle(job).id


def test_a_changed_dataset_changes_the_bundle_id(target):
    _, job = target
    before = build_bundle(job).id
    Path(job.dataset).write_text('{"prompt": "Hi", "completion": "Hello", "style": "TERSE"}\n')
    assert build_bundle(job).id != before


def test_a_missing_dataset_is_bad_input_naming_the_job(target):
    _, job = target
    job.dataset = "/nonexistent/data.jsonl"
    with pytest.raises(InputError, match="job demo: dataset /nonexistent/data.jsonl not found"):
        build_bundle(job)


def test_a_second_deploy_with_nothing_changed_sends_no_payload_bytes(target):
    instance, job = target
    transport = LocalTransport("box")
    first = deploy(transport, instance, job, sync_weights=False)
    assert first.payload_bytes_sent > 0
    bundle = Path(first.bundle_dir)
    assert (bundle / "remote_payload" / "supervise.py").is_file()
    assert (bundle / "job.json").is_file() and (bundle / "data" / "data.jsonl").is_file()
    before = transport.commands_run
    second = deploy(transport, instance, job, sync_weights=False)
    assert second.payload_bytes_sent == 0 and second.bundle_id == first.bundle_id
    assert transport.commands_run - before <= 2  # one presence check, one env check


def make_tar(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


@pytest.mark.parametrize("name,kind", [("../escape.txt", tarfile.REGTYPE), ("/tmp/abs.txt", tarfile.REGTYPE),
                                       ("a/../../escape.txt", tarfile.REGTYPE), ("link", tarfile.SYMTYPE)])
def test_extraction_refuses_members_that_escape_the_work_dir(tmp_path, name, kind):
    info = tarfile.TarInfo(name)
    info.type = kind
    data = b"x"
    if kind == tarfile.SYMTYPE:
        info.linkname, data = "/etc/passwd", b""
    else:
        info.size = 1
    dest = tmp_path / "work" / "bundles" / "evil"
    p = subprocess.run([sys.executable, "-c", (PAYLOAD_DIR / "unpack.py").read_text(), str(dest)],
                       input=make_tar([(info, data)]), capture_output=True)
    assert p.returncode != 0
    assert b"refusing" in p.stderr
    assert not dest.exists()
    assert not (tmp_path / "work" / "escape.txt").exists() and not (tmp_path / "escape.txt").exists()


def test_a_venv_is_built_once_per_requirements_hash_and_then_reused(tmp_path, target):
    instance, _ = target
    bundle = tmp_path / "bundle"
    (bundle / "remote_payload").mkdir(parents=True)
    (bundle / "remote_payload" / "requirements.txt").write_text("# nothing to install\n")
    transport = LocalTransport("box")
    venv = tmp_path / "work" / "venvs" / "abc"
    _create_venv(transport, instance, str(bundle), str(venv), torch_build=None)
    assert (venv / ".complete").exists() and (venv / "bin" / "python").exists()
    from orchestrator.deploy import _present

    assert _present(transport, str(bundle), str(venv)) == (False, True)


def test_the_torch_build_follows_the_driver_version():
    assert torch_build_for_driver("570.133.20") == "cu126"
    assert torch_build_for_driver("535.183.01") == "cu126"
    assert torch_build_for_driver("580.65.06") == "cu130"
    assert torch_build_for_driver(None) is None
    with pytest.raises(CheckFailed, match="too old"):
        torch_build_for_driver("470.82.01")


def test_the_payload_pins_match_the_payload_extra():
    import tomllib

    pins = {line.split("==")[0].lower(): line.strip() for line in
            (PAYLOAD_DIR / "requirements.txt").read_text().splitlines() if "==" in line and not line.startswith("#")}
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["payload"]
    for spec in extra:
        name = spec.split("==")[0].lower()
        assert pins.get(name) == spec, f"pyproject [payload] {spec} differs from requirements.txt {pins.get(name)}"
