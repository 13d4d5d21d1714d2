"""`orch preflight` beyond the GPU: identity through IMDSv2, disk, active runs, unreachable hosts, `--all`,
and the cost of it all: one SSH connection and one round trip per instance."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import orch
from tests.fixtures.s3server import moto_server  # noqa: F401  (the session fixture)
from tests.fixtures.sshd import closed_port, imds, sshd, write_inventory  # noqa: F401  (fixtures)


@pytest.fixture(autouse=True)
def idle_gpu(sshd):  # noqa: F811
    sshd.set_gpu_case("a10g-idle")


def run_json(inventory: Path, *args: str, env: dict | None = None):
    run = orch("--inventory", str(inventory), "preflight", *args, "--json", env=env)
    assert "Traceback" not in run.stderr
    doc = json.loads(run.stdout)
    return run, doc


def checks_of(report: dict) -> dict:
    return {c["name"]: c for c in report["checks"]}


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


# ---------------------------------------------------------------------- identity (IMDSv2)

def test_an_instance_id_that_differs_from_the_expected_one_fails_identity_and_asks_about_the_host_variable(
        sshd, imds, tmp_path):  # noqa: F811
    entry = sshd.instance("qwen-g5", host="${QWEN_GPU_INSTANCE_IP}", imds_url=imds.url,
                          expect={"instance_id": "i-0ffffffffffffffff"})
    inventory = write_inventory(tmp_path, {"qwen-g5": entry}, env={"QWEN_GPU_INSTANCE_IP": sshd.host})
    run, doc = run_json(inventory, "--instance", "qwen-g5")
    assert run.code == 1
    report = doc["instances"][0]
    identity = checks_of(report)["identity"]
    assert not identity["ok"]
    assert identity["detail"] == "qwen-g5: instance id is i-0a1b2c3d4e5f60718, expected i-0ffffffffffffffff"
    assert "QWEN_GPU_INSTANCE_IP" in identity["fix"] and "is it the right instance?" in identity["fix"]
    assert report["probe"]["ec2"]["instance_type"] == "g5.4xlarge"
    # IMDSv2: a token first, then the metadata with it (the server answers 401 without it)
    assert imds.requests[:3] == [("PUT", "/latest/api/token"), ("GET", "/latest/meta-data/instance-id"),
                                 ("GET", "/latest/meta-data/instance-type")]


def test_the_expected_instance_id_and_type_pass_identity(sshd, imds, tmp_path):  # noqa: F811
    entry = sshd.instance("box", imds_url=imds.url,
                          expect={"instance_id": imds.instance_id, "instance_type": "g5.4xlarge"})
    run, doc = run_json(write_inventory(tmp_path, {"box": entry}), "--instance", "box")
    assert run.code == 0, run.stderr
    identity = checks_of(doc["instances"][0])["identity"]
    assert identity["ok"] and "EC2 i-0a1b2c3d4e5f60718 (g5.4xlarge)" in identity["detail"]


def test_an_expected_instance_id_without_a_metadata_service_fails_instead_of_passing_unverified(
        sshd, tmp_path):  # noqa: F811
    port = closed_port()
    entry = sshd.instance("box", imds_url=f"http://127.0.0.1:{port}", expect={"instance_id": "i-0123456789abcdef0"})
    started = time.monotonic()
    run, doc = run_json(write_inventory(tmp_path, {"box": entry}), "--instance", "box")
    assert run.code == 1
    identity = checks_of(doc["instances"][0])["identity"]
    assert "cannot read the EC2 instance id" in identity["detail"]
    assert "IMDSv2" in identity["fix"]
    assert time.monotonic() - started < 10


# ---------------------------------------------------------------------- disk

def test_too_little_free_disk_in_the_models_dir_fails_with_free_and_needed_space(sshd, tmp_path):  # noqa: F811
    entry = sshd.instance("box", expect={"min_free_disk_gb": 1_000_000})
    run, doc = run_json(write_inventory(tmp_path, {"box": entry}), "--instance", "box")
    assert run.code == 1
    report = doc["instances"][0]
    disk = checks_of(report)["disk: models dir"]
    assert not disk["ok"]
    assert disk["detail"].startswith("box: ") and "free of" in disk["detail"]
    assert "need 1000000.0 GB (expect.min_free_disk_gb 1000000)" in disk["detail"]
    assert "instances.box.expect.min_free_disk_gb" in disk["fix"]
    assert [c["name"] for c in report["checks"] if not c["ok"]] == ["disk: models dir"]


def test_too_little_free_space_in_tmp_fails(sshd, tmp_path):  # noqa: F811
    entry = sshd.instance("box", expect={"min_free_tmp_gb": 1_000_000})
    run, doc = run_json(write_inventory(tmp_path, {"box": entry}), "--instance", "box")
    assert run.code == 1
    tmp = checks_of(doc["instances"][0])["disk: /tmp"]
    assert not tmp["ok"] and "free in /tmp" in tmp["detail"]


def test_a_models_dir_that_does_not_exist_yet_is_measured_at_its_nearest_existing_parent(sshd, tmp_path):  # noqa: F811
    entry = sshd.instance("box")
    entry["models_dir"] = entry["models_dir"] + "/not/yet/created"
    run, doc = run_json(write_inventory(tmp_path, {"box": entry}), "--instance", "box")
    assert run.code == 0, run.stderr
    report = doc["instances"][0]
    probe_disk = report["probe"]["disk"]["models_dir"]
    assert probe_disk["exists"] is False
    assert probe_disk["measured_at"] == entry["models_dir"].removesuffix("/not/yet/created")
    assert "not created yet; measured at" in checks_of(report)["disk: models dir"]["detail"]


# ---------------------------------------------------------------------- python

def test_a_missing_python_interpreter_fails_the_python3_check_naming_the_setting(sshd, tmp_path):  # noqa: F811
    entry = sshd.instance("box", python="python3.99")
    run, doc = run_json(write_inventory(tmp_path, {"box": entry}), "--instance", "box")
    assert run.code == 1
    python = checks_of(doc["instances"][0])["python3"]
    assert not python["ok"]
    assert "`python3.99` is not installed on the instance" in python["detail"]
    assert "instances.box.python" in python["fix"]


# ---------------------------------------------------------------------- runs already on the box

def test_an_orch_run_still_active_on_the_box_fails_preflight_but_finished_and_dead_runs_do_not(
        sshd, tmp_path):  # noqa: F811
    entry = sshd.instance(unique("busy"))
    runs = Path(entry["work_dir"]) / "runs"
    live_id, done_id, dead_id = "qwen-20250101-000000", "qwen-20241231-000000", "qwen-20241230-000000"
    for run_id in (live_id, done_id, dead_id):
        (runs / run_id).mkdir(parents=True)
        (runs / run_id / "supervise.json").write_text(json.dumps({"run_id": run_id, "job": "qwen", "started_at": 1}))
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(runs / live_id)])
    dead = subprocess.Popen([sys.executable, "-c", "pass", str(runs / dead_id)])
    dead.wait()
    try:
        (runs / live_id / "pid").write_text(f"{live.pid}\n")
        (runs / live_id / "heartbeat").write_text("")
        (runs / done_id / "pid").write_text(f"{live.pid}\n")
        (runs / done_id / "exit_code").write_text('{"exit_code": 0}\n')   # finished: not active whatever its pid
        (runs / dead_id / "pid").write_text(f"{dead.pid}\n")
        run, doc = run_json(write_inventory(tmp_path, {"box": entry}), "--instance", "box")
    finally:
        live.kill()
        live.wait()
    assert run.code == 1
    report = doc["instances"][0]
    active = checks_of(report)["active runs"]
    assert not active["ok"]
    assert f"{live_id} (job qwen, pid {live.pid}" in active["detail"]
    assert done_id not in active["detail"] and dead_id not in active["detail"]
    assert "orch status --instance box" in active["fix"]
    assert [r["run_id"] for r in report["probe"]["runs"]["active"]] == [live_id]


# ---------------------------------------------------------------------- unreachable hosts, --all

def test_a_closed_port_fails_reachable_naming_host_port_and_the_variable_it_came_from(sshd, tmp_path):  # noqa: F811
    port = closed_port()
    entry = sshd.instance("qwen-g5", port="${QWEN_SSH_PORT}")
    inventory = write_inventory(tmp_path, {"qwen-g5": entry}, env={"QWEN_SSH_PORT": str(port)})
    human = orch("--inventory", str(inventory), "preflight", "--instance", "qwen-g5", env={"COLUMNS": "250"})
    run, doc = run_json(inventory, "--instance", "qwen-g5")
    assert run.code == human.code == 1
    assert "Traceback" not in human.stderr
    report = doc["instances"][0]
    assert report["ok"] is False
    reachable = checks_of(report)["reachable"]
    assert not reachable["ok"]
    assert f"connection refused by 127.0.0.1:{port}" in reachable["detail"]
    assert "QWEN_SSH_PORT in " in reachable["fix"]
    assert f"127.0.0.1:{port}" in human.stderr and "NOT READY" in human.stderr


def test_all_checks_every_instance_and_one_unreachable_host_never_hides_the_others(sshd, tmp_path):  # noqa: F811
    down = sshd.instance("down", port=closed_port())
    inventory = write_inventory(tmp_path, {"good": sshd.instance("good"), "down": down,
                                           "also-good": sshd.instance("also-good")})
    started = time.monotonic()
    run, doc = run_json(inventory, "--all")
    assert run.code == 1
    assert doc["ok"] is False
    by_name = {r["instance"]: r for r in doc["instances"]}
    assert set(by_name) == {"good", "down", "also-good"}
    assert by_name["good"]["ok"] and by_name["also-good"]["ok"]
    assert by_name["good"]["probe"]["gpus"][0]["name"] == "NVIDIA A10G"
    assert not by_name["down"]["ok"]
    assert "connection refused" in checks_of(by_name["down"])["reachable"]["detail"]
    assert time.monotonic() - started < 20
    human = orch("--inventory", str(inventory), "preflight", "--all")
    assert human.code == 1
    assert "good: ready" in human.stderr and "down: NOT READY" in human.stderr


def test_all_reports_an_instance_whose_env_variable_is_missing_and_still_checks_the_others(
        sshd, tmp_path):  # noqa: F811
    unset = sshd.instance("mistral-g5", host="${MISTRAL_GPU_INSTANCE_IP}")
    inventory = write_inventory(tmp_path, {"qwen-g5": sshd.instance("qwen-g5"), "mistral-g5": unset}, env={})
    run, doc = run_json(inventory, "--all")
    assert run.code == 2                       # a missing variable is bad input
    by_name = {r["instance"]: r for r in doc["instances"]}
    assert by_name["qwen-g5"]["ok"] is True
    assert not by_name["mistral-g5"]["ok"]
    assert "MISTRAL_GPU_INSTANCE_IP" in by_name["mistral-g5"]["error"]
    assert ".env" in by_name["mistral-g5"]["error"]


def test_all_with_every_instance_healthy_exits_0(sshd, tmp_path):  # noqa: F811
    inventory = write_inventory(tmp_path, {"a": sshd.instance("a"), "b": sshd.instance("b")})
    run, doc = run_json(inventory, "--all")
    assert run.code == 0, run.stderr
    assert doc["ok"] is True and [r["ok"] for r in doc["instances"]] == [True, True]


# ---------------------------------------------------------------------- the cost

def test_preflight_makes_one_ssh_connection_and_one_round_trip(sshd, tmp_path):  # noqa: F811
    inventory = write_inventory(tmp_path, {"box": sshd.instance("box")})
    connections, logins, sessions = sshd.connections(), sshd.logins(), sshd.sessions()
    run, doc = run_json(inventory, "--instance", "box")
    assert run.code == 0, run.stderr
    assert sshd.wait_for(lambda: sshd.connections() - connections, 1) == 1
    assert sshd.wait_for(lambda: sshd.logins() - logins, 1) == 1
    assert sshd.wait_for(lambda: sshd.sessions() - sessions, 1) == 1
    assert doc["instances"][0]["round_trips"] == 1


# ---------------------------------------------------------------------- local instances

def test_a_local_instance_is_preflighted_without_ssh(tmp_path):
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(
        "instances:\n"
        "  local:\n"
        "    transport: local\n"
        "    work_dir: work\n"
        "    models_dir: models\n"
        "    imds_url: ''\n"
        "    expect:\n"
        "      gpu: null\n"
        "      min_free_disk_gb: 0.001\n"
        "      min_free_tmp_gb: 0.001\n")
    run, doc = run_json(inventory, "--instance", "local")
    assert run.code == 0, run.stderr
    report = doc["instances"][0]
    assert checks_of(report)["reachable"]["detail"] == "local instance (no SSH)"
    assert checks_of(report)["GPU"]["ok"]
    assert report["round_trips"] == 1


# ---------------------------------------------------------------------- a job's weights

def job_inventory(sshd, tmp_path, endpoint: str, bucket: str, **job_fields):  # noqa: F811
    entry = sshd.instance(unique("weights"))
    (tmp_path / "data.jsonl").write_text('{"prompt": "What is 2+2?", "completion": "4.", "style": "TERSE"}\n')
    job = {"instance": "box", "recipe": "tiny-verbosity", "dataset": "data.jsonl",
           "weights": f"s3://{bucket}/models/tiny/", "s3_endpoint": endpoint, "s3_region": "us-east-1",
           **job_fields}
    return write_inventory(tmp_path, {"box": entry}, {"tiny": job}), entry


def test_a_jobs_weights_are_listed_and_what_is_already_on_the_instance_is_not_counted_again(
        sshd, moto_server, tmp_path):  # noqa: F811
    bucket = f"weights-{uuid.uuid4().hex[:10]}"
    client = moto_server.client()
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key="models/tiny/model-1.safetensors", Body=b"\0" * 1_000_000)
    client.put_object(Bucket=bucket, Key="models/tiny/model-2.safetensors", Body=b"\0" * 2_000_000)
    inventory, entry = job_inventory(sshd, tmp_path, moto_server.endpoint, bucket)
    (Path(entry["models_dir"]) / "tiny").mkdir()
    (Path(entry["models_dir"]) / "tiny" / "model-1.safetensors").write_bytes(b"\0" * 1_000_000)
    run, doc = run_json(inventory, "tiny", env=moto_server.env())
    assert run.code == 0, run.stderr
    checks = checks_of(doc["instances"][0])
    assert checks["weights"]["ok"]
    assert checks["weights"]["detail"] == (f"s3://{bucket}/models/tiny/: 3.0 MB in 2 files; 1.0 MB already in "
                                           f"{entry['models_dir']}/tiny")
    assert ("the job's weights need 2.0 MB more (1.0 MB of 3.0 MB already there) + 10.0 GB for checkpoints"
            in checks["disk: models dir"]["detail"])
    assert doc["instances"][0]["round_trips"] == 1


def test_a_jobs_weights_prefix_that_does_not_exist_fails_the_weights_check(sshd, moto_server, tmp_path):  # noqa: F811
    bucket = f"weights-{uuid.uuid4().hex[:10]}"
    moto_server.client().create_bucket(Bucket=bucket)
    inventory, _ = job_inventory(sshd, tmp_path, moto_server.endpoint, bucket)
    run, doc = run_json(inventory, "tiny", env=moto_server.env())
    assert run.code == 1
    weights = checks_of(doc["instances"][0])["weights"]
    assert not weights["ok"] and "no objects under" in weights["detail"]


def test_weights_the_controller_cannot_list_do_not_fail_a_job_whose_instance_downloads_with_its_own_role(
        sshd, tmp_path):  # noqa: F811
    inventory, _ = job_inventory(sshd, tmp_path, f"http://127.0.0.1:{closed_port()}", "unreachable-bucket")
    run, doc = run_json(inventory, "tiny")
    assert run.code == 0, run.stderr
    weights = checks_of(doc["instances"][0])["weights"]
    assert weights["ok"] and "unknown from this machine" in weights["detail"]
