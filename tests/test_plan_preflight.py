"""Preflight's "GPU memory plan" check through the CLI, on the test sshd whose nvidia-smi replays a g5's A10G.

The job trains the Qwen3-14B recipe; its config.json is served gzipped by a real moto S3 server on loopback.
"""

from __future__ import annotations

import gzip
import json
import uuid
from pathlib import Path

import pytest
import yaml

from tests.conftest import orch
from tests.fixtures.s3server import moto_server  # noqa: F401  (the session fixture)
from tests.fixtures.sshd import sshd, write_inventory  # noqa: F401  (the session fixture)

ROOT = Path(__file__).resolve().parent.parent
QWEN3_14B = (ROOT / "bench" / "model_configs" / "qwen3-14b.json").read_bytes()
PAIRS = ROOT / "training_data" / "verbosity_pairs_example.jsonl"
WIDE = {"COLUMNS": "250"}


@pytest.fixture
def qwen_job(sshd, moto_server, tmp_path):  # noqa: F811
    """write(overrides, config=True) -> inventory: job `qwen` on an sshd box, its config.json (gzipped) on S3."""
    bucket = f"plan-{uuid.uuid4().hex[:10]}"
    client = moto_server.client()
    client.create_bucket(Bucket=bucket)

    def write(overrides: dict | None = None, config: bool = True) -> Path:
        if config:
            client.put_object(Bucket=bucket, Key="models/Qwen3-14B/config.json", Body=gzip.compress(QWEN3_14B))
        entry = sshd.instance(f"g5-{uuid.uuid4().hex[:6]}")
        job = {"instance": "box", "recipe": "qwen3-14b-verbosity", "dataset": str(PAIRS),
               "weights": f"s3://{bucket}/models/Qwen3-14B/", "s3_endpoint": moto_server.endpoint,
               "s3_region": "us-east-1", "overrides": overrides or {}}
        return write_inventory(tmp_path, {"box": entry}, {"qwen": job})

    yield write
    sshd.set_gpu_case("a10g-idle")


def plan_check(inventory: Path, env: dict) -> tuple[int, dict]:
    run = orch("--inventory", str(inventory), "preflight", "qwen", "--json", env=env)
    assert "Traceback" not in run.stderr
    checks = {c["name"]: c for c in json.loads(run.stdout)["instances"][0]["checks"]}
    return run.code, checks


def test_preflight_refuses_an_over_budget_job_with_the_breakdown_on_a_replayed_a10g(
        sshd, moto_server, qwen_job):  # noqa: F811
    sshd.set_gpu_case("a10g-idle")
    inventory = qwen_job({"per_device_train_batch_size": 16, "gradient_checkpointing": False})
    env = {**moto_server.env(), **WIDE}
    code, checks = plan_check(inventory, env)
    assert code == 1
    plan = checks["GPU memory plan"]
    assert not plan["ok"]
    assert [name for name, c in checks.items() if not c["ok"]] == ["GPU memory plan"]
    assert "GiB at peak" in plan["detail"] and "activations" in plan["detail"] and "22.5 GiB free on the A10G" in \
        plan["detail"]
    assert "per_device_train_batch_size=" in plan["fix"] and "gradient_checkpointing=true" in plan["fix"]
    human = orch("--inventory", str(inventory), "preflight", "qwen", env=env)
    assert human.code == 1 and "GPU memory plan" in human.stderr and "FAIL" in human.stderr
    assert "gradient_accumulation_steps=" in human.stderr
    # `orch train` refuses before it deploys anything; --force is the way past it
    train = orch("--inventory", str(inventory), "train", "qwen", env=env)
    assert train.code == 1 and "GPU memory plan" in train.stderr and "--force" in train.stderr


def test_the_recipe_as_shipped_fits_an_idle_a10g_but_not_one_another_process_holds(
        sshd, moto_server, qwen_job):  # noqa: F811
    inventory = qwen_job()
    env = moto_server.env()
    sshd.set_gpu_case("a10g-idle")
    code, checks = plan_check(inventory, env)
    assert code == 0 and checks["GPU memory plan"]["ok"]
    assert "22.5 GiB free on the A10G" in checks["GPU memory plan"]["detail"]
    sshd.set_gpu_case("a10g-busy")                      # pid 41873 holds 20 GB of the 24
    code, checks = plan_check(inventory, env)
    assert code == 1 and not checks["GPU idle"]["ok"]
    assert not checks["GPU memory plan"]["ok"] and "2.2 GiB free" in checks["GPU memory plan"]["detail"]
    assert "free the GPU" in checks["GPU memory plan"]["fix"]


def test_a_config_json_this_machine_cannot_read_leaves_the_memory_unplanned_not_failed(
        sshd, moto_server, qwen_job):  # noqa: F811
    sshd.set_gpu_case("a10g-idle")
    inventory = qwen_job(config=False)
    code, checks = plan_check(inventory, moto_server.env())
    assert checks["GPU memory plan"]["ok"]
    assert checks["GPU memory plan"]["detail"].startswith("not planned (no config.json under s3://")
    assert "orch plan qwen --model-config FILE" in checks["GPU memory plan"]["detail"]


def test_orch_plan_reads_the_config_json_synced_on_the_instance_over_ssh_when_s3_has_none(
        sshd, moto_server, qwen_job):  # noqa: F811
    inventory = qwen_job(config=False)
    models_dir = Path(yaml.safe_load(inventory.read_text())["instances"]["box"]["models_dir"])
    (models_dir / "Qwen3-14B").mkdir()
    (models_dir / "Qwen3-14B" / "config.json").write_bytes(gzip.compress(QWEN3_14B))
    run = orch("--inventory", str(inventory), "plan", "qwen", "--json", env=moto_server.env())
    assert run.code == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["model_config"]["source"] == f"box:{models_dir}/Qwen3-14B/config.json"
    assert "no config.json under s3://" in doc["model_config"]["tried"][0]
    assert doc["plan"]["model"]["hidden_size"] == 5120
