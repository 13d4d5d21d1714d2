"""The controller side of the weights sync (orchestrator/weights.py and `orch sync-weights`): the instance
downloads the weights itself through one transport command, the controller shows progress and gets the
summary; through the local transport, the real SSH transport against the test sshd, and the CLI."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from orchestrator.errors import CheckFailed, InputError
from orchestrator.inventory import Instance, Job
from orchestrator.remote import Remote
from orchestrator.s3 import S3Settings
from orchestrator.transport.local import LocalTransport
from orchestrator.weights import list_weights, local_weights_path, s3sync_args, sync_weights
from tests.fixtures.s3server import tree

ROOT = Path(__file__).resolve().parent.parent


def local_instance(tmp_path, **fields) -> Instance:
    return Instance(name="box", transport="local", work_dir=str(tmp_path / "work"),
                    models_dir=str(tmp_path / "models"), imds_url=None, **fields)


def s3_for(server) -> S3Settings:
    return S3Settings(endpoint=server.endpoint, region="us-east-1")


def s3_of(job) -> S3Settings:
    """What the inventory resolves for a job that names its endpoint and region (keys: the environment's)."""
    return S3Settings(endpoint=job.s3_endpoint, region=job.s3_region)


def job_for(ws, server, **fields) -> Job:
    values = {"weights": ws.uri, "s3_endpoint": server.endpoint, "s3_region": "us-east-1", **fields}
    return Job(name="tiny", instance="box", recipe="tiny-verbosity", dataset="unused.jsonl", **values)


class ScrubbedTransport(LocalTransport):
    """The local transport, but the command runs with no AWS credentials in its environment (like an
    instance without a role), and every command line is kept for inspection."""

    def __init__(self, name="box"):
        super().__init__(name)
        self.argvs: list[list[str]] = []

    def open(self, argv, *, env=None, cwd=None):
        self.argvs.append(list(argv))
        scrub = ["env", "-u", "AWS_ACCESS_KEY_ID", "-u", "AWS_SECRET_ACCESS_KEY", "-u", "AWS_SESSION_TOKEN"]
        return super().open([*scrub, *argv], env=env, cwd=cwd)


# ------------------------------------------------------------------------------------------ naming

@pytest.mark.parametrize("uri, name", [
    ("s3://example-llm-cache/models/Qwen/Qwen3-14B/", "Qwen3-14B"),
    ("s3://example-llm-cache/models/Qwen/Qwen3-14B", "Qwen3-14B"),
    ("s3://example-llm-cache/mistral-7b-v0.3/", "mistral-7b-v0.3"),
    ("s3://example-llm-cache/", "example-llm-cache"),
])
def test_the_s3_uri_becomes_a_folder_in_the_instances_models_dir_never_an_s3_path(tmp_path, uri, name):
    instance = Instance(name="g5", host="h", user="u", key="k", work_dir="/home/ubuntu/orch",
                        models_dir="/home/ubuntu/models/")
    job = Job(name="j", instance="g5", recipe="r", dataset="d", weights=uri)
    path = local_weights_path(instance, job)
    assert path == f"/home/ubuntu/models/{name}"
    assert "s3:" not in path and not path.startswith("/tmp")


def test_the_remote_command_carries_endpoint_and_region_but_never_credentials(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    instance = local_instance(tmp_path, s3_endpoint="http://127.0.0.1:9001")
    job = Job(name="j", instance="box", recipe="r", dataset="d", weights="s3://orch-bucket/m/",
              s3_region="eu-west-1", s3_credentials="forward")
    args = s3sync_args(instance, job, S3Settings(endpoint="http://127.0.0.1:9001", region="eu-west-1"), forward=True)
    assert args[args.index("--endpoint") + 1] == "http://127.0.0.1:9001"       # inventory wins over env
    assert args[args.index("--region") + 1] == "eu-west-1"
    assert "--creds-stdin" in args
    assert not any("testing-secret" in a for a in args)


# ------------------------------------------------------------------------------- listing (preflight)

def test_list_weights_counts_files_and_bytes_under_the_prefix_for_the_disk_check(moto_server, weights_set):
    ws = weights_set()
    files, total = list_weights(ws.uri, s3_for(moto_server))
    assert files == len(ws.files()) and total == ws.total_bytes


def test_list_weights_of_a_missing_bucket_or_empty_prefix_is_bad_input(moto_server, weights_set):
    ws = weights_set()
    with pytest.raises(InputError, match="does not exist"):
        list_weights("s3://orch-no-such-bucket/m/", s3_for(moto_server))
    with pytest.raises(InputError, match="no objects under"):
        list_weights(f"s3://{ws.bucket}/models/nothing-here/", s3_for(moto_server))


def test_list_weights_with_an_unreachable_endpoint_is_a_failed_check(tmp_path):
    from tests.fixtures.s3server import free_port

    with pytest.raises(CheckFailed, match="cannot reach"):
        list_weights("s3://orch-bucket/m/", S3Settings(endpoint=f"http://127.0.0.1:{free_port()}", region="us-east-1"))


# ----------------------------------------------------------------------------- sync through transports

def test_sync_weights_runs_one_command_on_the_instance_and_returns_its_summary(moto_server, weights_set, tmp_path):
    ws = weights_set()
    instance, job = local_instance(tmp_path), job_for(ws, moto_server)
    transport = LocalTransport("box")
    summary = sync_weights(transport, instance, job, s3_of(job), python=sys.executable, cwd=str(ROOT), progress=False)
    assert transport.commands_run == 1
    assert summary["ok"] and summary["dest"] == local_weights_path(instance, job)
    assert {r["path"] for r in summary["repaired"]} == {"config.json", "tokenizer_config.json"}
    assert tree(Path(summary["dest"])) == ws.files()
    again = sync_weights(transport, instance, job, s3_of(job), python=sys.executable, cwd=str(ROOT), progress=False)
    assert again["downloaded_files"] == 0 and again["requests"] == {"ListObjectsV2": 1}


def test_forwarded_credentials_reach_the_sync_on_stdin_only(rclone_server, tmp_path, monkeypatch):
    rclone_server.put_file("orch-forward", "models/m/config.json", b'{"a": 1}')
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", rclone_server.access_key)       # the controller's credentials
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", rclone_server.secret_key)
    instance = local_instance(tmp_path)
    job = Job(name="j", instance="box", recipe="r", dataset="d", weights="s3://orch-forward/models/m/",
              s3_endpoint=rclone_server.endpoint, s3_region="us-east-1", s3_credentials="forward")
    transport = ScrubbedTransport()
    summary = sync_weights(transport, instance, job, s3_of(job), python=sys.executable, cwd=str(ROOT), progress=False)
    assert summary["downloaded_files"] == 1
    assert not any(rclone_server.secret_key in part for argv in transport.argvs for part in argv)
    for path in Path(summary["dest"]).rglob("*"):
        assert rclone_server.secret_key.encode() not in path.read_bytes()


def test_without_forwarding_an_instance_lacking_credentials_fails_with_the_instances_message(
        rclone_server, tmp_path):
    rclone_server.put_file("orch-noforward", "models/m/config.json", b"{}")
    instance = local_instance(tmp_path)
    job = Job(name="j", instance="box", recipe="r", dataset="d", weights="s3://orch-noforward/models/m/",
              s3_endpoint=rclone_server.endpoint, s3_region="us-east-1")
    with pytest.raises(CheckFailed) as err:
        sync_weights(ScrubbedTransport(), instance, job, s3_of(job), python=sys.executable, cwd=str(ROOT), progress=False)
    assert "box: weights sync failed: no AWS credentials" in err.value.message
    assert "s3_credentials: forward" in err.value.hint


def test_bad_input_reported_by_the_instance_is_an_input_error(moto_server, weights_set, tmp_path):
    ws = weights_set()
    instance = local_instance(tmp_path)
    job = job_for(ws, moto_server, weights=f"s3://{ws.bucket}/models/none/")
    with pytest.raises(InputError, match="no objects under"):
        sync_weights(LocalTransport("box"), instance, job, s3_of(job), python=sys.executable, cwd=str(ROOT), progress=False)


def _python_for(account_uid: int, tmp_path: Path) -> str:
    """An interpreter with boto3 that the sshd login user can run: this venv's python when it can reach
    it, else the system python3 with this venv's site-packages (the venv may live under /root)."""
    import botocore

    site = Path(botocore.__file__).resolve().parent.parent
    wrapper = tmp_path / "python-with-boto3"
    wrapper.write_text(f"""#!/bin/sh
if "{sys.executable}" -c "" 2>/dev/null; then exec "{sys.executable}" "$@"; fi
PYTHONPATH="{site}" exec python3 "$@"
""")
    wrapper.chmod(0o755)
    os.chmod(tmp_path, os.stat(tmp_path).st_mode | stat.S_IXOTH | stat.S_IROTH)
    return str(wrapper)


def test_through_the_ssh_transport_the_instance_syncs_with_forwarded_credentials_and_shows_progress(
        sshd, moto_server, weights_set, tmp_path_factory, capsys):
    from orchestrator.inventory import Expect
    from orchestrator.transport import connect

    ws = weights_set()
    entry = sshd.instance("weights-box")
    scratch = tmp_path_factory.mktemp("sshpy")
    for parent in (scratch, *scratch.parents):
        if str(parent) in ("/", "/tmp"):
            break
        os.chmod(parent, os.stat(parent).st_mode | stat.S_IXOTH | stat.S_IROTH)
    entry.pop("expect")
    instance = Instance(name="weights-box", python=_python_for(sshd.account.pw_uid, scratch), expect=Expect(),
                        **entry)
    job = job_for(ws, moto_server, s3_credentials="forward")
    transport = connect(instance)
    try:
        remote = Remote(transport, instance)
        remote.ensure_payload()                     # the payload is on the box (any command puts it there)
        before = transport.commands_run
        summary = sync_weights(transport, instance, job, s3_of(job), python=instance.python, cwd=remote.payload_dir,
                               progress=True)
        assert transport.commands_run - before == 1
    finally:
        transport.close()
    dest = Path(local_weights_path(instance, job))
    assert summary["dest"] == str(dest) and dest.parent == Path(entry["models_dir"])
    assert tree(dest) == ws.files()
    assert dest.stat().st_uid == sshd.account.pw_uid            # written by the instance's user
    err = capsys.readouterr().err
    assert "repaired config.json" in err and "repaired tokenizer_config.json" in err
    assert "testing-secret-key" not in err


# --------------------------------------------------------------------------------------------- CLI

def write_project(project, ws, server, **job_fields) -> None:
    job = {"instance": "box", "recipe": "tiny-verbosity", "dataset": "data.jsonl", "weights": ws.uri,
           "s3_endpoint": server.endpoint, "s3_region": "us-east-1", **job_fields}
    project.write("data.jsonl", "{}\n")
    project.write("inventory.yaml", json.dumps({
        "instances": {"box": {"transport": "local", "work_dir": "work", "models_dir": "models", "imds_url": ""}},
        "jobs": {"tiny": job}}))


def test_orch_sync_weights_prints_one_json_document_and_a_rerun_downloads_nothing(
        project, moto_server, weights_set):
    ws = weights_set()
    write_project(project, ws, moto_server)
    first = project.orch("sync-weights", "tiny", "--json")
    assert first.code == 0, first.stderr
    doc = first.json()
    assert doc["ok"] and doc["path"] == str(project.root / "models" / "tiny-qwen3")
    assert doc["downloaded_files"] == len(ws.files())
    assert tree(Path(doc["path"])) == ws.files()
    second = project.orch("sync-weights", "--instance", "box", "--json")
    assert second.code == 0, second.stderr
    assert second.json()["downloaded_files"] == 0 and second.json()["requests"] == {"ListObjectsV2": 1}


def test_orch_sync_weights_for_an_empty_prefix_exits_2_with_one_message_and_no_traceback(
        project, moto_server, weights_set):
    ws = weights_set()
    write_project(project, ws, moto_server, weights=f"s3://{ws.bucket}/models/tiny-qwen/")
    run = project.orch("sync-weights", "tiny")
    assert run.code == 2
    assert "no objects under" in run.stderr and "tiny-qwen3" in run.stderr     # the suggestion
    assert "Traceback" not in run.stderr


def test_orch_sync_weights_says_what_it_did_for_a_person(project, moto_server, weights_set):
    ws = weights_set()
    write_project(project, ws, moto_server)
    run = project.orch("sync-weights", "tiny")
    assert run.code == 0, run.stderr
    assert "weights in place on box" in run.stderr and "2 repaired" in run.stderr
    assert "repaired config.json" in run.stderr
    assert run.stdout == ""


def test_an_instance_python_without_boto3_fails_saying_to_deploy_first(moto_server, weights_set, tmp_path):
    ws = weights_set()
    no_site = tmp_path / "python-without-site-packages"
    no_site.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    no_site.chmod(0o755)
    instance = local_instance(tmp_path, python=str(no_site))
    with pytest.raises(CheckFailed) as err:
        sync_weights(LocalTransport("box"), instance, job_for(ws, moto_server), s3_for(moto_server),
                     python=instance.python, cwd=str(ROOT), progress=False)
    assert "botocore is not installed" in err.value.message
    assert "orch deploy" in err.value.hint


def test_orch_sync_weights_dry_run_says_what_would_be_downloaded_and_writes_nothing(
        project, moto_server, weights_set):
    ws = weights_set()
    write_project(project, ws, moto_server)
    run = project.orch("sync-weights", "tiny", "--dry-run", "--json")
    assert run.code == 0, run.stderr
    doc = run.json()
    assert doc["dry_run"] and doc["to_download_files"] == len(ws.files()) and doc["downloaded_files"] == 0
    assert tree(Path(doc["path"])) == {}
