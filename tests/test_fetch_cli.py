"""`orch fetch-adapter` through the real CLI (a subprocess), on a `local` instance holding a finished run."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.fixtures.s3server import moto_server, unique_bucket  # noqa: F401  (the session fixture)
from tests.test_fetch_local import assert_fetched, corrupt, make_run

RUN_ID = "demo-20250101-000000-ab12"


@pytest.fixture
def box(project):
    """A project whose `local` instance has one finished run of job `demo` (as supervise.py leaves it)."""
    root = project.root
    project.write("data.jsonl", '{"prompt": "Hi", "completion": "Hello", "style": "TERSE"}\n')
    project.write("inventory.yaml", f"""
        instances:
          box:
            transport: local
            work_dir: {root}/work
            models_dir: {root}/models
            imds_url: ""
            expect:
              gpu: null
        jobs:
          demo:
            instance: box
            recipe: tiny-verbosity
            dataset: data.jsonl
            weights: s3://orch-demo/tiny-qwen3/
    """)
    run_dir = make_run(root / "work" / "runs" / RUN_ID)
    (run_dir / "supervise.json").write_text(json.dumps({"run_id": RUN_ID, "job": "demo",
                                                        "started_at": time.time() - 60}))
    (run_dir / "pid").write_text("999999999\n")
    return project, run_dir


def test_fetch_adapter_prints_one_json_document_and_leaves_a_verified_copy(box):
    project, run_dir = box
    run = project.orch("fetch-adapter", "demo", "--dest", "out", "--json")
    assert run.code == 0, run.stderr
    doc = run.json()
    dest = Path(doc["dest"])
    assert dest == project.root / "out" / "demo" / RUN_ID
    assert doc["verified"] is True and doc["status"] == "fetched"
    assert_fetched(dest, run_dir)


def test_a_corrupted_adapter_on_the_instance_exits_1_with_one_clear_message(box):
    project, run_dir = box
    corrupt(run_dir / "adapter" / "adapter_model.safetensors")
    run = project.orch("fetch-adapter", "demo", "--dest", "out")
    assert run.code == 1
    assert "adapter/adapter_model.safetensors" in run.stderr and "corrupted" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (project.root / "out" / "demo" / RUN_ID).exists()


def test_fetch_adapter_with_upload_archives_the_verified_copy_to_s3(box, moto_server, monkeypatch):  # noqa: F811
    project, _ = box
    bucket = unique_bucket("adapters")
    moto_server.client().create_bucket(Bucket=bucket)
    inventory = project.root / "inventory.yaml"
    inventory.write_text(inventory.read_text().replace(
        "weights: s3://orch-demo/tiny-qwen3/",
        f"weights: s3://orch-demo/tiny-qwen3/\n    s3_endpoint: {moto_server.endpoint}\n    s3_region: us-east-1"))
    run = project.orch("fetch-adapter", "demo", "--dest", "out", "--upload", f"s3://{bucket}/nightly/",
                       "--json", env=moto_server.env())
    assert run.code == 0, run.stderr
    upload = run.json()["upload"]
    assert isinstance(upload, dict), upload
    assert upload["uri"] == f"s3://{bucket}/nightly/demo/{RUN_ID}/"
    keys = {o["Key"] for o in moto_server.client().list_objects_v2(Bucket=bucket)["Contents"]}
    assert f"nightly/demo/{RUN_ID}/adapter/adapter_model.safetensors" in keys
    assert f"nightly/demo/{RUN_ID}/upload-manifest.json" in keys
