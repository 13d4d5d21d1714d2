"""Deploy: content-addressed payload and job inputs built from an allowlist, unchanged deploys send nothing,
extraction stays in the work dir, and the venv is built once per requirements hash."""

from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from orchestrator.bundle import PACKAGE_FILES, PAYLOAD_DIR, build_job_inputs, build_payload, payload_files
from orchestrator.deploy import deploy, torch_build_for_driver
from orchestrator.errors import CheckFailed, InputError
from orchestrator.inventory import Instance, Job
from orchestrator.transport.local import LocalTransport

ROOT = Path(__file__).resolve().parent.parent
INSTALL = PAYLOAD_DIR / "install.py"


@pytest.fixture
def target(tmp_path):
    dataset = tmp_path / "data.jsonl"
    dataset.write_text('{"prompt": "What is 2+2?", "completion": "4", "style": "TERSE"}\n')
    instance = Instance(name="box", transport="local", work_dir=str(tmp_path / "work"),
                        models_dir=str(tmp_path / "models"), python=sys.executable, python_env=sys.prefix)
    job = Job(name="demo", instance="box", recipe="tiny-verbosity", dataset=str(dataset),
              weights="s3://orch-demo/tiny/")
    return instance, job


def test_the_same_inputs_build_the_same_ids(target):
    _, job = target
    assert build_job_inputs(job).id == build_job_inputs(job).id
    assert build_payload().id == build_payload(PAYLOAD_DIR).id


def test_a_changed_dataset_changes_the_inputs_id_but_not_the_payloads(target):
    _, job = target
    before, payload = build_job_inputs(job).id, build_payload().id
    Path(job.dataset).write_text('{"prompt": "Hi", "completion": "Hello", "style": "TERSE"}\n')
    assert build_job_inputs(job).id != before and build_payload().id == payload


def test_a_missing_dataset_is_bad_input_naming_the_job(target):
    _, job = target
    job.dataset = "/nonexistent/data.jsonl"
    with pytest.raises(InputError, match="job demo: dataset /nonexistent/data.jsonl not found"):
        build_job_inputs(job)


def test_the_payload_holds_exactly_the_files_git_tracks_under_remote_payload():
    tracked = subprocess.run(["git", "ls-files", "remote_payload"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    assert payload_files() == sorted(p.removeprefix("remote_payload/") for p in tracked)


def test_a_stray_env_file_or_key_dropped_into_the_payload_folder_is_never_shipped(tmp_path):
    copy = tmp_path / "remote_payload"
    shutil.copytree(PAYLOAD_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    strays = {".env": "AWS_SECRET_ACCESS_KEY=oops\n", "id_ed25519": "-----BEGIN OPENSSH PRIVATE KEY-----\n",
              "creds.pem": "x", "notes.txt": "todo", ".aws/credentials": "[default]\n",
              "data/secret.key": "x", "scratch/tool.py": "print('not a package')\n"}
    for rel, text in strays.items():
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        (copy / rel).write_text(text)
    shipped = payload_files(copy)
    assert shipped == payload_files(PAYLOAD_DIR)
    with tarfile.open(fileobj=io.BytesIO(build_payload(copy).data)) as tar:
        names = tar.getnames()
    assert not [n for n in names if any(n.endswith(s) for s in strays)]


def test_the_allowlist_is_the_package_data_pyproject_installs():
    import tomllib

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert tuple(data["remote_payload"]) == PACKAGE_FILES


def test_a_second_deploy_with_nothing_changed_sends_no_payload_bytes_in_one_round_trip(target):
    instance, job = target
    transport = LocalTransport("box")
    first = deploy(transport, instance, job, sync_weights=False)
    assert first.payload_bytes_sent > 0
    assert (Path(first.bundle_dir) / "remote_payload" / "supervise.py").is_file()
    assert (Path(first.job_dir) / "job.json").is_file() and (Path(first.job_dir) / "data" / "data.jsonl").is_file()
    before = transport.commands_run
    second = deploy(transport, instance, job, sync_weights=False)
    assert second.payload_bytes_sent == 0 and second.bundle_id == first.bundle_id
    assert transport.commands_run - before == 1  # presence, verification and the env check in one command


def install(tmp_path, args: list[str], archives: list[bytes]) -> subprocess.CompletedProcess:
    """install.py as the controller runs it: the archives the instance asks for, length-prefixed, on stdin."""
    body = b"".join(struct.pack(">Q", len(a)) + a for a in archives)
    return subprocess.run([sys.executable, str(INSTALL), "--lock", str(tmp_path / "locks" / "deploy.lock"), *args],
                          input=body, capture_output=True)


def events(proc: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


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
    dest = tmp_path / "work" / "payload" / "evil"
    proc = install(tmp_path, ["--item", f"payload={dest}"], [make_tar([(info, data)])])
    assert proc.returncode == 2
    assert "refusing" in events(proc)[-1]["message"]
    assert not dest.exists() and not list(dest.parent.iterdir())
    assert not (tmp_path / "work" / "escape.txt").exists() and not (tmp_path / "escape.txt").exists()


def test_an_archive_that_does_not_match_its_own_file_list_is_refused(tmp_path):
    archive = build_payload().data
    buf = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(archive)) as src, tarfile.open(fileobj=buf, mode="w") as out:
        for member in src.getmembers():
            data = src.extractfile(member).read()
            if member.name == "remote_payload/supervise.py":
                data = data + b"# tampered\n"
                member.size = len(data)
            out.addfile(member, io.BytesIO(data))
    dest = tmp_path / "work" / "payload" / "p1"
    proc = install(tmp_path, ["--item", f"payload={dest}"], [buf.getvalue()])
    assert proc.returncode == 1
    assert "remote_payload/supervise.py differs" in events(proc)[-1]["message"]
    assert not dest.exists()


def test_a_venv_is_built_once_per_requirements_hash_and_then_reused(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# nothing to install\n")
    venv = tmp_path / "work" / "venvs" / "abc"
    first = install(tmp_path, ["--venv", str(venv), "--requirements", str(requirements)], [])
    assert first.returncode == 0, first.stderr
    assert [e["status"] for e in events(first) if e["event"] == "venv"] == ["building", "built"]
    assert (venv / ".complete").exists() and (venv / "bin" / "python").exists()
    again = install(tmp_path, ["--venv", str(venv), "--requirements", str(requirements)], [])
    assert [e["status"] for e in events(again) if e["event"] == "venv"] == ["present"]
    requirements.write_text("# changed pins\n")
    changed = install(tmp_path, ["--venv", str(venv), "--requirements", str(requirements)], [])
    assert [e["status"] for e in events(changed) if e["event"] == "venv"] == ["building", "built"]


def test_the_torch_build_follows_the_driver_version():
    assert torch_build_for_driver("570.133.20") == "cu126"
    assert torch_build_for_driver("535.183.01") == "cu126"
    assert torch_build_for_driver("580.65.06") == "cu130"
    assert torch_build_for_driver(None) is None
    with pytest.raises(CheckFailed, match="too old"):
        torch_build_for_driver("470.82.01")


def test_the_payload_pins_and_the_payload_extra_are_the_same_set():
    import tomllib

    pins = {line.split("==")[0].lower(): line.strip() for line in
            (PAYLOAD_DIR / "requirements.txt").read_text().splitlines() if "==" in line and not line.startswith("#")}
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["payload"]
    extra = {spec.split("==")[0].lower(): spec for spec in extra}
    assert extra == pins, "pyproject [payload] and remote_payload/requirements.txt must pin the same packages alike"
