"""Stage 2 on the payload: a tiny-iac run continues from the session's tiny-verbosity adapter (loaded trainable,
style rows included), records its parent, and the replay mix is deterministic by seed."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from remote_payload.replay import data_lines, mix, replay_count
from tests.conftest_payload import DEMO_DATASET, ROOT, call_main, make_bundle

IAC = ROOT / "training_data" / "iac_example.jsonl"

pytestmark = pytest.mark.timeout(900)


def test_replay_gives_the_same_mix_for_the_same_seed_and_another_for_another_seed():
    new, parent = IAC.read_bytes(), DEMO_DATASET.read_bytes()
    first, record = mix(new, parent, 0.1, seed=42)
    again, _ = mix(new, parent, 0.1, seed=42)
    other, other_record = mix(new, parent, 0.1, seed=7)
    assert first == again and first != other
    assert record["replayed_lines"] != other_record["replayed_lines"]
    lines = data_lines(first)
    replayed = len(lines) - len(data_lines(new))
    assert replayed == record["replayed_rows"] == replay_count(len(data_lines(new)), len(data_lines(parent)), 0.1)
    assert abs(replayed / len(lines) - 0.1) < 0.02                 # the fraction is the parent's share of the mix
    parent_lines = data_lines(parent)
    assert sorted(line for line in lines if line in parent_lines) == sorted(parent_lines[i - 1]
                                                                          for i in record["replayed_lines"])
    assert [line for line in lines if line not in parent_lines] == data_lines(new)   # the new rows keep their order


def test_a_replay_fraction_outside_its_range_is_refused():
    with pytest.raises(ValueError, match="fraction"):
        replay_count(10, 10, 0.9)


@pytest.fixture(scope="module")
def stage2(trained_run, tmp_path_factory):
    from remote_payload import train

    assert trained_run.exit_code == 0
    work = tmp_path_factory.mktemp("stage2")
    mixed, record = mix(IAC.read_bytes(), DEMO_DATASET.read_bytes(), 0.1, seed=42)
    dataset = work / "iac_mixed.jsonl"
    dataset.write_bytes(mixed)
    bundle = make_bundle(work / "bundle", dataset, recipe="tiny-iac", job="iac")
    doc = json.loads((bundle / "job.json").read_text())
    (bundle / "job.json").write_text(json.dumps({**doc, "replay": {"job": "demo", **record}}))
    run_dir = work / "runs" / "iac-run"
    parent = {"run_id": "demo-20260101-000000-abcd", "job": "demo", "source": "demo"}
    t0 = time.monotonic()
    code = call_main(train.main, ["--job", str(bundle / "job.json"), "--model-dir", str(trained_run.model_dir),
                                  "--run-dir", str(run_dir), "--init-adapter", str(trained_run.adapter),
                                  "--parent", json.dumps(parent)])
    return code, run_dir, time.monotonic() - t0


def test_a_stage2_run_records_its_parent_run_and_adapter_sha256(stage2, trained_run):
    from remote_payload.modeling import file_sha256, read_adapter_meta

    code, run_dir, seconds = stage2
    assert code == 0, (run_dir / "run.json").read_text()[-2000:]
    run = json.loads((run_dir / "run.json").read_text())
    parent = run["parent"]
    assert parent["run_id"] == "demo-20260101-000000-abcd" and parent["job"] == "demo"
    assert parent["adapter_sha256"] == file_sha256(trained_run.adapter / "adapter_model.safetensors")
    assert parent["recipe"] == "tiny-verbosity" and parent["task"] == "verbosity"
    assert run["job"]["replay"]["replayed_rows"] > 0 and run["recipe"]["name"] == "tiny-iac"
    meta = read_adapter_meta(run_dir / "adapter")
    assert meta["parent"]["adapter_sha256"] == parent["adapter_sha256"]
    assert [e["run_id"] for e in meta["lineage"]] == ["demo-20260101-000000-abcd"]
    print(f"stage 2 trained in {seconds:.1f} s")


def _style_rows(adapter: Path) -> dict:
    from safetensors.torch import load_file

    tensors = load_file(str(adapter / "adapter_model.safetensors"))
    return {k: v for k, v in tensors.items() if "token_adapter" in k or "trainable_tokens" in k}


def test_stage2_starts_from_the_parent_and_keeps_training_its_lora_and_style_rows(stage2, trained_run):
    from safetensors.torch import load_file

    _, run_dir, _ = stage2
    before = load_file(str(trained_run.adapter / "adapter_model.safetensors"))
    after = load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))
    assert set(before) == set(after)                       # one adapter of the same shape: both stages in it
    rows_before, rows_after = _style_rows(trained_run.adapter), _style_rows(run_dir / "adapter")
    assert rows_before and set(rows_before) == set(rows_after)
    assert any(not rows_before[k].equal(rows_after[k]) for k in rows_before)   # the style rows were trained
    lora = [k for k in before if "lora_A" in k]
    assert any(not before[k].equal(after[k]) for k in lora)
    # continued, not restarted: the LoRA weights stay far closer to the parent's than to a fresh start's zeros
    key = next(k for k in before if "lora_B" in k and before[k].abs().sum() > 0)
    assert (after[key] - before[key]).norm() < before[key].norm()


def test_the_verbosity_gate_still_holds_after_stage2(stage2):
    _, run_dir, _ = stage2
    report = json.loads((run_dir / "eval.json").read_text())
    print(f"VERBOSE/TERSE ratio after stage 2: {report['ratio']:.2f}")
    assert report["passed"] and report["ratio"] >= 3.0


def test_a_parent_adapter_that_does_not_match_its_manifest_is_refused(trained_run, tmp_path):
    from remote_payload import train

    broken = tmp_path / "adapter"
    shutil.copytree(trained_run.adapter, broken)
    weights = broken / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    bundle = make_bundle(tmp_path / "bundle", IAC, recipe="tiny-iac", job="iac")
    code = call_main(train.main, ["--job", str(bundle / "job.json"), "--model-dir", str(trained_run.model_dir),
                                  "--run-dir", str(tmp_path / "run"), "--init-adapter", str(broken)])
    assert code == 2
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert "does not match its manifest" in run["error"]["message"]
