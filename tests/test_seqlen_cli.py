"""`orch seqlen JOB` through the CLI on the local instance: the job is deployed (payload, inputs, venv, weights
from the moto S3 server), the report is made on the instance with the model's tokenizer and printed here."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from tests.conftest_payload import DEMO_DATASET, call_main, make_bundle
from tests.fixtures.local_project import local_project, tiny_weights_uri  # noqa: F401  (fixtures)

pytestmark = pytest.mark.timeout(300)


def payload_report(tmp_path, tiny_model_dir, *args: str) -> dict:
    """The report `python -m remote_payload.seqlen` makes of the same job and model, run here directly."""
    from remote_payload import seqlen

    bundle = make_bundle(tmp_path / "bundle", DEMO_DATASET)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = call_main(seqlen.main, ["--job", str(bundle / "job.json"), "--model-dir", str(tiny_model_dir),
                                       "--json", *args])
    assert code == 0
    return json.loads(buf.getvalue())


def test_seqlen_deploys_the_demo_job_and_prints_the_instances_report_with_a_walk_through(
        local_project, tmp_path, tiny_model_dir):  # noqa: F811
    r = local_project.orch("seqlen", "demo", "--show-examples", "1", "--json")
    assert r.code == 0, r.stderr[-3000:]
    doc = r.json()
    assert doc["ok"] and doc["instance"] == "local" and doc["job"] == "demo"
    # the instance tokenized the deployed job with the synced weights' tokenizer: the same numbers as the payload
    # run directly on the job and the model it was built from
    direct = payload_report(tmp_path, tiny_model_dir, "--show-examples", "1")
    keys = ("examples", "cutoff", "total_tokens", "prompt_tokens", "completion_tokens", "masked_tokens",
            "trained_tokens", "over_cutoff", "suggested_max_length")
    assert {k: doc[k] for k in keys} == {k: direct[k] for k in keys}
    assert doc["examples"] == sum(1 for line in DEMO_DATASET.read_text().splitlines() if line.strip())
    assert doc["masked_tokens"] > 0 and doc["trained_tokens"] > 0 and doc["over_cutoff"] == 0
    walk = doc["walk_through"][0]
    assert walk["rendered"] == direct["walk_through"][0]["rendered"]
    assert [m["role"] for m in walk["messages"]][-1] == "assistant"
    assert (local_project.models / "tiny-qwen3" / "tokenizer.json").is_file()   # the weights were synced for it


def test_seqlen_prints_seed_003s_report_and_what_a_shorter_cutoff_would_leave_out(local_project):  # noqa: F811
    r = local_project.orch("seqlen", "demo", "--cutoff", "64", "--show-examples", "2", "--max-samples", "40")
    assert r.code == 0, r.stderr[-3000:]
    out = r.stdout
    assert "examples: 40   cutoff: 64" in out
    for row in ("total_tokens", "prompt_tokens", "completion_tokens", "p95", "p99"):
        assert row in out
    assert "masked (-100) tokens:" in out and "trained tokens:" in out
    assert "suggested max_length (~1.15 x p95):" in out
    # two walk-throughs: the JSON record, the chat messages, the template, the token ids and the masking
    assert out.count("[record] ") == 2 and out.count("[messages]") == 2 and out.count("[ids] first 20") == 2
    over = int(out.split("over cutoff: ")[1].split(" ")[0])
    assert over > 0 and f"{over} example(s) are longer than 64 tokens" in r.stderr


def test_seqlen_refuses_a_bad_job_before_touching_the_instance(local_project):  # noqa: F811
    local_project.write_inventory({"broken": {"instance": "local", "recipe": "no-such-recipe",
                                              "dataset": str(DEMO_DATASET), "weights": "s3://bucket/models/x/"}})
    r = local_project.orch("seqlen", "broken")
    assert r.code == 2
    assert "no-such-recipe" in r.stderr
    assert not (local_project.work / "payload").exists()
