"""Sequence-length analysis (seed 003's check_seq_len): percentiles, masked/trained counts, cutoff truncation."""

from __future__ import annotations

import json

import pytest

pytest.register_assert_rewrite("tests.conftest_payload")

from remote_payload.features import length_stats  # noqa: E402
from tests.conftest_payload import DEMO_DATASET, call_main, make_bundle  # noqa: E402

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def demo_bundle(tmp_path):
    return make_bundle(tmp_path / "bundle", DEMO_DATASET)


def seqlen(*argv):
    from remote_payload import seqlen as module

    return call_main(module.main, list(argv))


def test_percentiles_are_nearest_rank_over_the_lengths():
    stats = length_stats(list(range(100, 0, -1)))
    assert stats == {"min": 1.0, "max": 100.0, "mean": 50.5, "p50": 50.0, "p90": 90.0, "p95": 95.0,
                     "p99": 99.0, "p100": 100.0}
    assert length_stats([7])["p50"] == 7.0


def test_the_report_counts_masked_and_trained_tokens_and_what_a_cutoff_would_leave_out(
        demo_bundle, tiny_model_dir, capsys):
    from remote_payload.dataset import load_dataset
    from remote_payload.features import encode_example
    from remote_payload.modeling import prepare_tokenizer

    assert seqlen("--job", str(demo_bundle / "job.json"), "--model-dir", str(tiny_model_dir),
                  "--cutoff", "100", "--json") == 0
    report = json.loads(capsys.readouterr().out)

    tokenizer, _ = prepare_tokenizer(tiny_model_dir)
    features = [encode_example(tokenizer, e, {"enable_thinking": False}) for e in load_dataset(DEMO_DATASET).examples]
    lengths = sorted(len(f.input_ids) for f in features)
    assert report["examples"] == 388 and report["cutoff"] == 100
    assert report["over_cutoff"] == sum(n > 100 for n in lengths) > 0
    assert report["over_cutoff_percent"] == round(100 * report["over_cutoff"] / 388, 2)
    assert report["masked_tokens"] == sum(f.prompt_tokens for f in features)
    assert report["trained_tokens"] == sum(f.completion_tokens for f in features)
    assert report["masked_tokens"] + report["trained_tokens"] == sum(lengths)
    assert report["total_tokens"]["max"] == lengths[-1] and report["total_tokens"]["p50"] == lengths[193]
    assert report["suggested_max_length"] % 64 == 0
    assert report["suggested_max_length"] >= 1.15 * report["total_tokens"]["p95"]


def test_the_default_cutoff_is_the_recipe_max_length_and_the_demo_set_fits(demo_bundle, tiny_model_dir, capsys):
    assert seqlen("--job", str(demo_bundle / "job.json"), "--model-dir", str(tiny_model_dir), "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["cutoff"] == 256 and report["over_cutoff"] == 0 and report["recipe"] == "tiny-verbosity"


def test_the_text_report_shows_rendered_examples_with_their_masking(demo_bundle, tiny_model_dir, capsys):
    assert seqlen("--job", str(demo_bundle / "job.json"), "--model-dir", str(tiny_model_dir),
                  "--show-examples", "1") == 0
    out = capsys.readouterr().out
    assert out.startswith("--- verbosity_demo.jsonl:1 (TERSE)\n<|im_start|>system\n")
    assert "<STYLE_TERSE>\nHow many bones are in the adult human body?<|im_end|>" in out
    assert "[tokens] total 64 (fits); masked prompt 59, trained answer 5 (92.2% masked)" in out
    assert "masked (-100) tokens:" in out and "suggested max_length" in out


def test_a_bad_dataset_or_cutoff_is_refused_with_exit_2(tmp_path, tiny_model_dir, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "q", "completion": "a"}\n')
    bundle = make_bundle(tmp_path / "bundle", bad)
    assert seqlen("--job", str(bundle / "job.json"), "--model-dir", str(tiny_model_dir)) == 2
    assert "bad.jsonl:1: no style" in capsys.readouterr().err
    demo = make_bundle(tmp_path / "demo", DEMO_DATASET)
    assert seqlen("--job", str(demo / "job.json"), "--model-dir", str(tiny_model_dir), "--cutoff", "0") == 2
    assert "--cutoff must be >= 1" in capsys.readouterr().err
