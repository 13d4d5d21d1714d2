"""The probe (remote_payload/probe.py) on its own, and the comparisons preflight makes with what it returns."""

from __future__ import annotations

import ast
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from orchestrator.inventory import Expect, Instance, Job
from orchestrator.preflight import GB, evaluate, probe_params
from tests.conftest import ROOT
from tests.fixtures.sshd import ImdsServer, closed_port

PROBE = ROOT / "remote_payload" / "probe.py"
# the system python3, as on an instance before any venv exists (this venv's python where there is none)
SYSTEM_PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable


def run_probe(params: dict) -> dict:
    """The probe the way preflight sends it: the script on stdin, the parameters as one argument."""
    params = {"runstate_source": (PROBE.parent / "runstate.py").read_text(), **params}
    p = subprocess.run([SYSTEM_PYTHON, "-I", "-S", "-", json.dumps(params)], input=PROBE.read_bytes(),
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stderr == b""
    return json.loads(p.stdout)


@pytest.mark.parametrize("name", ["probe.py", "runstate.py", "supervise.py", "install.py", "inspect_run.py"])
def test_the_stdlib_tools_are_python_3_6_syntax_and_import_only_the_standard_library(name):
    tree = ast.parse((PROBE.parent / name).read_text(), feature_version=(3, 6))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported and imported <= set(sys.stdlib_module_names) | {"remote_payload"}
    own = {node.names[0].name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
           and node.module == "remote_payload"}
    assert own <= {"runstate"}, "the stdlib tools import nothing of the payload but the run-state module"


def test_the_probe_never_crashes_each_section_reports_its_own_error(tmp_path):
    locked = tmp_path / "locked"
    (locked / "runs").mkdir(parents=True)
    (locked / "runs" / "r1").mkdir()
    (locked / "runs" / "r1" / "pid").write_text("not a pid")
    doc = run_probe({"paths": {"models_dir": "relative/path", "work_dir": str(locked), "tmp": "/tmp"},
                     "sizes": {"weights": str(tmp_path / "absent")}, "imds_url": "ftp://nope",
                     "work_dir": str(locked)})
    assert doc["probe_version"] == 1
    assert "imds_url must be http://" in doc["ec2"]["error"]
    [damaged] = doc["runs"]["active"]           # a pid file holding garbage: possibly active, and why
    assert damaged["run_id"] == "r1" and damaged["state"] == "unknown" and "supervise.json" in damaged["reason"]
    assert doc["sizes"]["weights"]["exists"] is False
    assert doc["python"]["version"].count(".") == 2
    bad = subprocess.run([SYSTEM_PYTHON, "-", "{not json"], input=PROBE.read_bytes(), capture_output=True)
    assert bad.returncode == 0 and "bad parameters" in json.loads(bad.stdout)["errors"]["params"]


def test_the_probe_asks_imdsv2_for_a_token_and_reads_the_instance_id_and_type():
    with ImdsServer(instance_id="i-0123456789abcdef0", instance_type="g6.xlarge") as imds:
        doc = run_probe({"imds_url": imds.url})
        assert doc["ec2"] == {"instance_id": "i-0123456789abcdef0", "instance_type": "g6.xlarge", "error": None,
                              "url": imds.url}
        assert [method for method, _ in imds.requests] == ["PUT", "GET", "GET"]


def test_a_metadata_service_that_never_answers_costs_the_probe_only_its_short_timeout():
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    try:
        started = time.monotonic()
        doc = run_probe({"imds_url": f"http://127.0.0.1:{silent.getsockname()[1]}", "imds_timeout": 0.3})
        elapsed = time.monotonic() - started
    finally:
        silent.close()
    assert doc["ec2"]["instance_id"] is None
    assert "no answer" in doc["ec2"]["error"]
    assert elapsed < 2.0


def test_no_metadata_request_is_made_when_imds_is_off_for_the_instance():
    doc = run_probe({"imds_url": None})
    assert doc["ec2"]["error"].startswith("not asked")


def test_a_refused_metadata_port_is_reported_not_raised():
    doc = run_probe({"imds_url": f"http://127.0.0.1:{closed_port()}"})
    assert "Connection refused" in doc["ec2"]["error"] or "ConnectionRefusedError" in doc["ec2"]["error"]


def test_disk_for_a_path_not_created_yet_is_measured_at_its_nearest_existing_parent(tmp_path):
    doc = run_probe({"paths": {"models_dir": str(tmp_path / "a" / "b" / "c")}})
    disk = doc["disk"]["models_dir"]
    assert disk["exists"] is False and disk["measured_at"] == str(tmp_path)
    assert disk["free_bytes"] > 0 and disk["total_bytes"] >= disk["free_bytes"]
    assert "does not exist yet" in disk["note"]


def test_weights_already_on_disk_are_counted(tmp_path):
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "model.safetensors").write_bytes(b"\0" * 4096)
    doc = run_probe({"sizes": {"weights": str(tmp_path / "w")}})
    assert doc["sizes"]["weights"]["bytes"] == 4096 and doc["sizes"]["weights"]["files"] == 1


# ---------------------------------------------------------------------- evaluate(): the comparisons

def instance(**expect) -> Instance:
    return Instance(name="qwen-g5", transport="ssh", host="203.0.113.10", port=22, user="ubuntu", key="/k",
                    work_dir="/home/ubuntu/orch", models_dir="/home/ubuntu/models", imds_url=None,
                    origins={"host": "QWEN_GPU_INSTANCE_IP in .env"},
                    expect=Expect(**{"gpu": "A10G", "min_vram_gb": 22, **expect}))


def probe_doc(gpus=(("NVIDIA A10G", 23028, 0),), processes=(), python="3.10.12", free=400 * GB,
              weights_present=0) -> dict:
    return {
        "hostname": "ip-172-31-0-10", "ec2": {"instance_id": None, "error": "off"},
        "python": {"version": python},
        "nvidia_smi": {"status": "ok", "driver_version": "570.133.20", "cuda_version": "12.8"},
        "gpus": [{"index": i, "name": n, "uuid": f"GPU-{i}", "memory_total_mib": t, "memory_used_mib": u}
                 for i, (n, t, u) in enumerate(gpus)],
        "gpu_processes": [{"pid": pid, "name": "python3", "used_mib": mib, "gpu_uuid": f"GPU-{gi}", "gpu_index": gi}
                          for pid, mib, gi in processes],
        "disk": {k: {"path": p, "measured_at": p, "free_bytes": free, "total_bytes": 500 * GB}
                 for k, p in (("models_dir", "/home/ubuntu/models"), ("work_dir", "/home/ubuntu/orch"),
                              ("tmp", "/tmp"))},
        "sizes": {"weights": {"bytes": weights_present}},
        "runs": {"active": []},
    }


def failed(checks) -> dict:
    return {c.name: c for c in checks if not c.ok}


def test_an_expected_l4_does_not_match_an_l40s_but_a10g_matches_nvidia_a10g():
    assert failed(evaluate(instance(gpu="L4"), probe_doc(gpus=[("NVIDIA L40S", 46068, 0)])))["GPU model"]
    assert "GPU model" not in failed(evaluate(instance(gpu="L4"), probe_doc(gpus=[("NVIDIA L4", 23034, 0)])))
    assert failed(evaluate(instance(), probe_doc())) == {}
    h100 = evaluate(instance(gpu="H100", min_vram_gb=80), probe_doc(gpus=[("NVIDIA H100 80GB HBM3", 81559, 0)]))
    assert failed(h100) == {}


def test_gpu_memory_in_use_without_any_visible_process_still_counts_as_busy():
    checks = failed(evaluate(instance(), probe_doc(gpus=[("NVIDIA A10G", 23028, 18000)])))
    assert "18000 MiB in use by processes not visible here" in checks["GPU idle"].detail


def test_the_jobs_gpu_is_the_one_that_must_be_idle_on_a_multi_gpu_box():
    gpus = [("NVIDIA A10G", 23028, 20000), ("NVIDIA A10G", 23028, 0)]
    job = Job(name="qwen", instance="qwen-g5", recipe="r", dataset="d", weights="s3://bucket/models/Qwen3-14B/")
    on_gpu0 = failed(evaluate(instance(), probe_doc(gpus=gpus, processes=[(4242, 20000, 0)]), job))
    assert "pid 4242" in on_gpu0["GPU idle"].detail
    job.gpu = 1
    assert failed(evaluate(instance(), probe_doc(gpus=gpus, processes=[(4242, 20000, 0)]), job)) == {}


def test_python_older_than_3_10_fails_naming_the_interpreter_setting():
    checks = failed(evaluate(instance(), probe_doc(python="3.8.10")))
    assert "Python 3.8.10" in checks["python3"].detail
    assert "instances.qwen-g5.python" in checks["python3"].fix


def test_the_weights_still_to_download_plus_headroom_set_the_disk_needed():
    weights = 28 * GB
    job = Job(name="qwen", instance="qwen-g5", recipe="r", dataset="d", weights="s3://bucket/models/Qwen3-14B/")
    assert probe_params(instance(), job)["sizes"] == {"weights": "/home/ubuntu/models/Qwen3-14B"}
    short = failed(evaluate(instance(), probe_doc(free=30 * GB), job, weights_bytes=weights))
    assert "need 38.0 GB" in short["disk: models dir"].detail
    assert "weights need 28.0 GB more" in short["disk: models dir"].detail
    # 20 GB already synced: only the missing 8 GB (+ headroom) are needed
    enough = evaluate(instance(), probe_doc(free=30 * GB, weights_present=20 * GB), job, weights_bytes=weights)
    assert failed(enough) == {}


def test_an_identity_mismatch_on_hostname_names_the_setting_and_asks_about_the_host():
    checks = failed(evaluate(instance(hostname="qwen-trainer"), probe_doc()))
    check = checks["identity"]
    assert check.detail == "qwen-g5: hostname is ip-172-31-0-10, expected qwen-trainer"
    assert "host 203.0.113.10 comes from QWEN_GPU_INSTANCE_IP in .env; is it the right instance?" in check.fix


@pytest.mark.parametrize("count, ok", [(1, True), (2, False)])
def test_gpu_count_requires_that_many_matching_gpus(count, ok):
    checks = failed(evaluate(instance(gpu_count=count), probe_doc()))
    assert ("GPU model" not in checks) is ok
