"""`orch preflight` against a real sshd whose `nvidia-smi` replays recorded output: one test per GPU case.

Each case is run twice through the real CLI: once for the human table (stderr) and once with --json
(exactly one JSON document on stdout), and must give the same verdict and exit code both ways.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import orch
from tests.fixtures.sshd import sshd, write_inventory  # noqa: F401  (the session fixture)

WIDE = {"COLUMNS": "250"}


@pytest.fixture
def gpu_box(sshd, tmp_path):  # noqa: F811
    """An inventory with instance qwen-g5 on the test sshd, its host coming from .env like the user's."""
    entry = sshd.instance("qwen-g5", host="${QWEN_GPU_INSTANCE_IP}")
    inventory = write_inventory(tmp_path, {"qwen-g5": entry}, env={"QWEN_GPU_INSTANCE_IP": sshd.host})
    yield sshd, inventory
    sshd.set_gpu_case("a10g-idle")


def preflight(inventory, case_server, case: str):
    case_server.set_gpu_case(case)
    human = orch("--inventory", str(inventory), "preflight", "--instance", "qwen-g5", env=WIDE)
    machine = orch("--inventory", str(inventory), "preflight", "--instance", "qwen-g5", "--json", env=WIDE)
    assert "Traceback" not in human.stderr + machine.stderr
    doc = json.loads(machine.stdout)              # the whole of stdout is one JSON document
    assert human.code == machine.code
    assert doc["ok"] is (machine.code == 0)
    (report,) = doc["instances"]
    assert report["instance"] == "qwen-g5"
    checks = {c["name"]: c for c in report["checks"]}
    return human, machine.code, report, checks


def failed(checks: dict) -> list[str]:
    return [name for name, c in checks.items() if not c["ok"]]


def test_an_idle_a10g_passes_every_check_and_exits_0(gpu_box):
    server, inventory = gpu_box
    human, code, report, checks = preflight(inventory, server, "a10g-idle")
    assert code == 0, human.stderr
    assert failed(checks) == []
    assert {"reachable", "host key", "identity", "python3", "nvidia-smi", "GPU model", "GPU memory", "GPU idle",
            "disk: models dir", "disk: /tmp", "active runs"} <= set(checks)
    assert report["error"] is None
    gpu = report["probe"]["gpus"][0]
    assert gpu["name"] == "NVIDIA A10G"
    assert gpu["memory_total_mib"] == 23028 and gpu["memory_used_mib"] == 0
    assert gpu["driver_version"] == "570.133.20" and gpu["cuda_version"] == "12.8"
    assert gpu["uuid"].startswith("GPU-")
    assert report["probe"]["gpu_processes"] == []
    assert "23028 MiB (24.1 GB)" in checks["GPU memory"]["detail"]
    assert "driver 570.133.20, CUDA 12.8" in checks["nvidia-smi"]["detail"]
    # the human table shows every check passing and says the box is ready
    assert human.stderr.count("PASS") == len(checks) and "FAIL" not in human.stderr
    assert "qwen-g5: ready" in human.stderr


def test_a_busy_a10g_fails_gpu_idle_and_names_the_process_holding_20_gb(gpu_box):
    server, inventory = gpu_box
    human, code, report, checks = preflight(inventory, server, "a10g-busy")
    assert code == 1
    assert failed(checks) == ["GPU idle"]
    detail = checks["GPU idle"]["detail"]
    assert detail.startswith("qwen-g5: ")
    assert "pid 41873" in detail and "20480 MiB" in detail
    assert report["probe"]["gpu_processes"][0]["used_mib"] == 20480
    assert "GPU idle" in human.stderr and "FAIL" in human.stderr
    assert "NOT READY" in human.stderr


def test_an_l4_where_an_a10g_is_expected_fails_and_asks_whether_the_env_variable_points_at_the_right_box(gpu_box):
    server, inventory = gpu_box
    human, code, report, checks = preflight(inventory, server, "l4")
    assert code == 1
    assert failed(checks) == ["GPU model"]
    check = checks["GPU model"]
    assert check["detail"] == "qwen-g5: GPU is NVIDIA L4, expected A10G"
    assert f"host {server.host} comes from QWEN_GPU_INSTANCE_IP in " in check["fix"]
    assert "is it the right instance?" in check["fix"]
    assert report["probe"]["gpus"][0]["memory_total_mib"] == 23034
    assert "QWEN_GPU_INSTANCE_IP" in human.stderr


def test_a_box_without_nvidia_smi_fails_as_having_no_driver_and_asks_whether_it_is_the_right_instance(gpu_box):
    server, inventory = gpu_box
    human, code, report, checks = preflight(inventory, server, "none")
    assert code == 1
    assert failed(checks) == ["nvidia-smi"]
    assert "nvidia-smi is not installed" in checks["nvidia-smi"]["detail"]
    assert "QWEN_GPU_INSTANCE_IP" in checks["nvidia-smi"]["fix"]
    assert report["probe"]["nvidia_smi"]["status"] == "missing"
    assert report["probe"]["gpus"] == []
    assert "GPU model" not in checks       # nothing to compare without nvidia-smi
    assert "nvidia-smi" in human.stderr and "FAIL" in human.stderr


def test_a_broken_driver_fails_with_nvidia_smis_own_message(gpu_box):
    server, inventory = gpu_box
    human, code, report, checks = preflight(inventory, server, "driver-error")
    assert code == 1
    assert failed(checks) == ["nvidia-smi"]
    assert "couldn't communicate with the NVIDIA driver" in checks["nvidia-smi"]["detail"]
    assert "exited with 9" in checks["nvidia-smi"]["detail"]
    assert report["probe"]["nvidia_smi"]["status"] == "error"


def test_a_gpu_with_less_memory_than_expected_fails_naming_the_inventory_minimum(sshd, tmp_path):  # noqa: F811
    sshd.set_gpu_case("a10g-idle")
    inventory = write_inventory(tmp_path, {"big": sshd.instance("big", expect={"min_vram_gb": 40})})
    run = orch("--inventory", str(inventory), "preflight", "--instance", "big", "--json")
    assert run.code == 1
    checks = {c["name"]: c for c in run.json()["instances"][0]["checks"]}
    assert not checks["GPU memory"]["ok"]
    assert "23028 MiB (24.1 GB); need >= 40 GB" in checks["GPU memory"]["detail"]
    assert "instances.big.expect.min_vram_gb" in checks["GPU memory"]["fix"]
