"""The plan a run records (orchestrator/run_plan.py) and the payload's planned-vs-measured (plan_check.py).

Plans are made from real config.json files read back from the moto S3 server through the one S3 client factory,
for a GPU the recorded nvidia-smi of a g5 names. A GPU is what this machine lacks, so the measured side of a GPU
run is given here as run.json carries it; the CLI test of a real (CPU) run is test_status_cli.py.
"""

from __future__ import annotations

import gzip
import json
import uuid
from pathlib import Path

import pytest

from orchestrator.inventory import Expect, Instance, Job
from orchestrator.run_plan import plan_document
from orchestrator.s3 import S3Settings
from remote_payload.plan_check import check, measured_seconds_per_step, read_plan
from tests.conftest_payload import MOVIELENS

ROOT = Path(__file__).resolve().parent.parent
QWEN3_8B = json.loads((ROOT / "bench" / "model_configs" / "qwen3-8b.json").read_text())
A10G_PROBE = {"gpus": [{"index": 0, "name": "NVIDIA A10G", "memory_total_mib": 23028, "memory_used_mib": 0,
                        "driver_version": "570.133.20"}]}   # tests/data/nvidia_smi/a10g-idle


@pytest.fixture
def s3_job(moto_server, tmp_path):
    """job(recipe, config=True, **fields) -> (Job, Instance, S3Settings): its config.json (gzipped, as seed 000's
    bucket stored it) on the moto server, or nothing there."""
    bucket = f"run-plan-{uuid.uuid4().hex[:8]}"
    moto_server.client().create_bucket(Bucket=bucket)

    def make(recipe: str, config: dict | None = QWEN3_8B, expect_gpu: str | None = "A10G", **fields):
        if config is not None:
            moto_server.client().put_object(Bucket=bucket, Key="models/Qwen3-8B/config.json",
                                            Body=gzip.compress(json.dumps(config).encode()))
        instance = Instance(name="box", transport="local", work_dir=str(tmp_path / "work"),
                            models_dir=str(tmp_path / "models"), expect=Expect(gpu=expect_gpu))
        job = Job(name="ml", instance="box", recipe=recipe, dataset=str(MOVIELENS["train"]),
                  weights=f"s3://{bucket}/models/Qwen3-8B/", **fields)
        s3 = S3Settings(endpoint=moto_server.endpoint, region="us-east-1", access_key_id=moto_server.access_key,
                        secret_access_key=moto_server.secret_key)
        return job, instance, s3

    return make


def test_a_gpu_recipe_is_planned_for_the_gpu_preflight_saw_with_its_memory_and_step_time(s3_job):
    from orchestrator.plan import estimate_from_dataset, make_plan
    from remote_payload.recipes import load_recipe

    job, instance, s3 = s3_job("qwen3-8b-movielens")
    doc = plan_document(job, instance, s3, probe=A10G_PROBE)
    assert doc["absent"] == {} and doc["device"] == "cuda" and doc["gpu"]["name"] == "A10G"
    assert doc["model_config"]["source"].endswith("models/Qwen3-8B/config.json")
    recipe = load_recipe("qwen3-8b-movielens")
    plan = make_plan(QWEN3_8B, recipe, gpu="A10G", tokens=estimate_from_dataset(MOVIELENS["train"], "qwen3", recipe))
    planned = doc["planned"]
    assert planned["peak_allocated_bytes"] == plan.memory.peak_allocated
    assert planned["peak_reserved_bytes"] == plan.memory.peak_reserved
    assert planned["seconds_per_step"] == pytest.approx(plan.time.seconds_per_step, rel=1e-3)
    assert planned["steps_per_epoch"] == plan.steps_per_epoch == -(-960 // 16)    # 960 examples, 2 x 8 a step
    assert planned["steps"] == round(plan.steps_per_epoch * recipe.num_train_epochs)
    # a classification recipe trains no style rows: LoRA only
    assert planned["trainable_params"] == sum(plan.setup.to_json()["lora_r"] * (i + o) for i, o in
                                              _linears(QWEN3_8B))
    assert json.loads(json.dumps(doc)) == doc       # plan.json: plain JSON


def _linears(config: dict):
    """(in, out) of every linear LoRA adapts in a Qwen3 block, times the layers."""
    h, inter = config["hidden_size"], config["intermediate_size"]
    q = config["num_attention_heads"] * config["head_dim"]
    kv = config["num_key_value_heads"] * config["head_dim"]
    block = [(h, q), (h, kv), (h, kv), (q, h), (h, inter), (h, inter), (inter, h)]
    return block * config["num_hidden_layers"]


def test_a_gpu_the_planner_does_not_know_gets_its_memory_planned_but_no_step_time(s3_job):
    job, instance, s3 = s3_job("qwen3-8b-movielens")
    probe = {"gpus": [{"index": 0, "name": "NVIDIA RTX 9999", "memory_total_mib": 32000, "memory_used_mib": 0}]}
    doc = plan_document(job, instance, s3, probe=probe)
    assert doc["planned"]["peak_allocated_bytes"] > 0 and "seconds_per_step" not in doc["planned"]
    assert "RTX 9999 is not in the planner's throughput table" in doc["absent"]["seconds_per_step"]


def test_a_cpu_recipe_plans_what_does_not_depend_on_the_device_and_says_why_the_rest_is_absent(s3_job):
    job, instance, s3 = s3_job("tiny-movielens", expect_gpu=None)
    doc = plan_document(job, instance, s3, probe={"gpus": []})
    assert doc["device"] == "cpu" and doc["gpu"] is None and doc["plan"] is None
    assert set(doc["planned"]) == {"trainable_params", "total_params", "steps", "steps_per_epoch"}
    assert doc["planned"]["steps"] == 600                       # the recipe's max_steps
    for key in ("gpu_memory", "seconds_per_step"):
        assert "trains on CPU" in doc["absent"][key]


def test_a_plan_that_cannot_be_made_says_why_and_never_raises(s3_job):
    job, instance, s3 = s3_job("qwen3-8b-movielens", config=None)   # no config.json on S3, none on the instance
    doc = plan_document(job, instance, s3, probe=A10G_PROBE)
    assert doc["planned"] == {} and doc["plan"] is None
    assert "config.json" in doc["absent"]["all"] and "\n" not in doc["absent"]["all"]


def metrics(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def step(n: int, t: float, attempt: int = 1) -> dict:
    return {"event": "step", "attempt": attempt, "step": n, "elapsed_seconds": t, "loss": 1.0}


def test_seconds_per_step_leave_out_start_up_evaluations_saves_and_other_attempts(tmp_path):
    path = metrics(tmp_path / "metrics.jsonl", [
        {"event": "attempt", "attempt": 1, "start_step": 0},
        step(5, 50.0),                          # start-up: before the first record, never counted
        step(10, 55.0), step(15, 60.0),         # 1 s/step
        step(20, 65.0),
        {"event": "eval", "attempt": 1, "step": 20, "eval_loss": 0.5},
        step(25, 170.0),                        # an evaluation and the save at 20 in this interval: left out
        step(30, 175.0),
        {"event": "attempt", "attempt": 2, "start_step": 20},
        step(25, 900.0, attempt=2), step(30, 999.0, attempt=2),
    ])
    got = measured_seconds_per_step(path, attempt=1, save_steps=20)
    assert got["value"] == pytest.approx(1.0) and got["intervals"] == 4 and got["steps"] == 20
    assert measured_seconds_per_step(path, attempt=2)["value"] == pytest.approx(99.0 / 5)
    assert measured_seconds_per_step(tmp_path / "none.jsonl", 1)["value"] is None


def gpu_run(plan: dict, tmp_path: Path) -> dict:
    """run.json of a finished GPU run, as the payload writes it."""
    metrics(tmp_path / "metrics.jsonl", [step(25, 10.0), step(50, 240.0), step(75, 470.0)])   # 9.2 s/step
    return {"plan": plan, "peak_memory": {"cpu_max_rss_bytes": 1, "gpu_max_allocated_bytes": 10 * 2 ** 30,
                                          "gpu_max_reserved_bytes": 12 * 2 ** 30},
            "hardware": {"cuda_available": True}, "parameters": {"trainable": 43_646_976},
            "training": {"global_step": 400, "early_stopped": False}, "recipe": {"save_steps": 0},
            "attempts": [{"attempt": 1}]}


def test_a_gpu_run_records_its_measured_peak_and_step_time_beside_the_plan(tmp_path):
    plan = {"device": "cuda", "gpu": {"name": "A10G"}, "absent": {},
            "planned": {"peak_allocated_bytes": 8 * 2 ** 30, "peak_reserved_bytes": 10 * 2 ** 30,
                        "seconds_per_step": 9.1, "trainable_params": 43_646_976, "steps": 400}}
    got = check(gpu_run(plan, tmp_path), tmp_path / "metrics.jsonl")
    assert got["gpu_allocated_bytes"] == {"planned": 8 * 2 ** 30, "measured": 10 * 2 ** 30, "ratio": 1.25, "why": None}
    assert got["gpu_reserved_bytes"]["ratio"] == 1.2
    assert got["seconds_per_step"]["measured"] == pytest.approx(9.2) and got["seconds_per_step"]["ratio"] == 1.011
    assert got["trainable_params"]["ratio"] == 1.0 and got["steps"]["ratio"] == 1.0
    assert got["gpu"] == "A10G" and got["not_planned"] is None


def test_a_cpu_run_says_why_gpu_memory_is_absent_instead_of_showing_zeros(tmp_path):
    plan = read_plan(None)                        # not started by orch train: no plan at all
    run = gpu_run(plan, tmp_path)
    run.update(peak_memory={"cpu_max_rss_bytes": 1}, hardware={"cuda_available": False})
    got = check(run, tmp_path / "metrics.jsonl")
    assert got["gpu_allocated_bytes"]["measured"] is None and got["gpu_allocated_bytes"]["ratio"] is None
    assert "trained on CPU" in got["gpu_allocated_bytes"]["why"]
    assert "not started by `orch train`" in got["not_planned"]
    assert got["seconds_per_step"]["planned"] is None and got["seconds_per_step"]["measured"] == pytest.approx(9.2)
