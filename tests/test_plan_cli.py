"""`orch plan JOB` through the real CLI: where config.json comes from, the breakdown, what fits, exit codes."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import yaml

from tests.fixtures.s3server import unique_bucket

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "bench" / "model_configs"
PAIRS = ROOT / "training_data" / "verbosity_pairs_example.jsonl"
QWEN3_14B = (CONFIGS / "qwen3-14b.json").read_bytes()
WIDE = {"COLUMNS": "250"}


def write_project(project, *, gpu="A10G", overrides=None, **job) -> Path:
    """A local instance (no SSH) expecting `gpu`, and job `qwen` on it training the 14B recipe."""
    instance = {"transport": "local", "work_dir": str(project.root / "work"),
                "models_dir": str(project.root / "models"),
                "imds_url": "", "expect": {"gpu": gpu}}
    spec = {"instance": "box", "recipe": "qwen3-14b-verbosity", "dataset": str(PAIRS),
            "weights": "s3://example-llm-cache/models/Qwen/Qwen3-14B/", "s3_region": "us-east-1",
            "overrides": overrides or {}, **job}
    project.write("inventory.yaml", yaml.safe_dump({"instances": {"box": instance}, "jobs": {"qwen": spec}}))
    return project.root / "inventory.yaml"


def test_plan_with_a_model_config_file_shows_the_breakdown_and_what_fits_and_exits_0(project):
    write_project(project)
    config = project.write("config.json", QWEN3_14B.decode())
    human = project.orch("plan", "qwen", "--model-config", str(config), env=WIDE)
    assert human.code == 0, human.stderr
    assert human.stdout == ""                                  # humans read stderr
    for text in ("quantized weights", "embeddings, lm_head, norms", "LoRA + style rows", "optimizer states",
                 "activations", "logits peak", "embedding copy", "CUDA context", "largest per-device batch",
                 "s/step", "steps/epoch", "4 characters per token", "fits:", "A10G"):
        assert text in human.stderr, text
    machine = project.orch("plan", "qwen", "--model-config", str(config), "--json")
    assert machine.code == 0
    doc = machine.json()
    assert doc["ok"] and doc["fits"]["ok"] and doc["model_config"]["source"] == str(config)
    plan = doc["plan"]
    assert plan["model"]["hidden_size"] == 5120 and plan["gpu"]["name"] == "A10G"
    names = [c["name"] for c in plan["memory"]["components"]]
    assert names[:5] == ["quantized weights", "embeddings, lm_head, norms", "LoRA + style rows", "gradients",
                         "optimizer states"]
    assert all(c["assumption"] for c in plan["memory"]["components"])
    assert plan["tokens"]["examples"] == 24 and "estimated" in plan["tokens"]["source"]
    assert plan["time"]["seconds_per_step"] > 0 and plan["steps_per_epoch"] == 2


def test_plan_reads_a_gzipped_config_json_from_the_jobs_s3_prefix(project, moto_server):
    bucket = unique_bucket("plan")
    client = moto_server.client()
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key="models/Qwen3-14B/config.json", Body=gzip.compress(QWEN3_14B))
    client.put_object(Bucket=bucket, Key="models/Qwen3-8B/config.json",
                      Body=gzip.compress((CONFIGS / "qwen3-8b.json").read_bytes()), ContentEncoding="gzip")
    write_project(project, weights=f"s3://{bucket}/models/Qwen3-14B/", s3_endpoint=moto_server.endpoint)
    mark = moto_server.mark()
    result = project.orch("plan", "qwen", "--json", env=moto_server.env())
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["model_config"]["source"] == f"s3://{bucket}/models/Qwen3-14B/config.json"
    assert doc["plan"]["model"]["num_hidden_layers"] == 40
    reads = [r for r in moto_server.requests(since=mark, bucket=bucket) if r.method == "GET"]
    assert len(reads) == 1                                     # one small GET, no listing, no weights
    # the same file stored with Content-Encoding: gzip
    write_project(project, weights=f"s3://{bucket}/models/Qwen3-8B/", s3_endpoint=moto_server.endpoint)
    result = project.orch("plan", "qwen", "--json", env=moto_server.env())
    assert result.code == 0, result.stderr
    assert result.json()["plan"]["model"]["num_hidden_layers"] == 36


def test_plan_falls_back_to_the_instances_models_dir_and_says_why(project):
    write_project(project)                                     # S3 points at a closed loopback port (conftest)
    synced = project.root / "models" / "Qwen3-14B"
    synced.mkdir(parents=True)
    (synced / "config.json").write_bytes(gzip.compress(QWEN3_14B))   # as seed 000's sync left it
    result = project.orch("plan", "qwen", "--json")
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["model_config"]["source"] == f"box:{synced / 'config.json'}"
    assert "cannot reach the S3 endpoint" in doc["model_config"]["tried"][0]
    (synced / "config.json").unlink()                          # neither S3 nor the instance has it
    missing = project.orch("plan", "qwen")
    assert missing.code == 2 and "no config.json for job qwen" in missing.stderr and "--model-config" in missing.stderr


def test_plan_exits_1_with_what_to_change_when_the_job_cannot_fit_its_gpu(project):
    write_project(project, overrides={"per_device_train_batch_size": 8, "max_length": 4096})
    config = project.write("config.json", QWEN3_14B.decode())
    seqlen = project.write("seqlen.json", json.dumps({
        "examples": 3200, "cutoff": 4096, "percentiles": [50, 90, 95, 99, 100],
        "total_tokens": {"min": 20.0, "max": 3000.0, "mean": 700.0, "p50": 600.0, "p90": 1500.0, "p95": 2000.0,
                         "p99": 2800.0, "p100": 3000.0}}))
    human = project.orch("plan", "qwen", "--model-config", str(config), "--seqlen", str(seqlen), env=WIDE)
    assert human.code == 1
    assert "DOES NOT FIT" in human.stderr and "per_device_train_batch_size=" in human.stderr
    assert "seqlen report" in human.stderr
    doc = project.orch("plan", "qwen", "--model-config", str(config), "--seqlen", str(seqlen), "--json").json()
    assert doc["ok"] is False and doc["fits"]["fix"].startswith("set one of these")
    assert doc["plan"]["memory"]["seq"] == 3000                # the longest example, not max_length
    assert doc["plan"]["tokens"]["examples"] == 3200
    big = project.orch("plan", "qwen", "--model-config", str(config), "--seqlen", str(seqlen), "--gpu", "H200",
                       "--gpus", "4", "--json").json()
    assert big["ok"] and big["plan"]["setup"]["gpus"] == 4
    assert big["plan"]["steps_per_epoch"] == 7                 # 3200 / (8 x 16 x 4)


def test_plan_without_a_target_gpu_asks_for_one(project):
    write_project(project, gpu=None)
    config = project.write("config.json", QWEN3_14B.decode())
    result = project.orch("plan", "qwen", "--model-config", str(config))
    assert result.code == 2 and "no target GPU" in result.stderr and "--gpu" in result.stderr
    unknown = project.orch("plan", "qwen", "--model-config", str(config), "--gpu", "L40S", "--json")
    assert unknown.code == 2 and "unknown GPU" in unknown.json()["error"]


def test_plan_of_a_job_with_a_yaml_recipe_plans_the_yaml_fields_not_the_builtin_ones(project):
    project.write("recipes/long.yaml", "base: qwen3-14b-verbosity\nmax_length: 4096\n"
                                       "per_device_train_batch_size: 2\n")
    write_project(project, recipe=str(project.root / "recipes" / "long.yaml"))
    config = project.write("config.json", QWEN3_14B.decode())
    done = project.orch("plan", "qwen", "--model-config", str(config), "--json")
    assert done.code in (0, 1), done.stderr
    plan = done.json()["plan"]
    assert plan["setup"]["batch"] == 2 and plan["setup"]["max_length"] == 4096, plan["setup"]
