"""A `generation` recipe trains plain prompt-completion SFT (no style tokens) and its evaluation answers held-out
prompts through the validator hook, which gates nothing until validators are registered."""

from __future__ import annotations

import json

import pytest

pytest.register_assert_rewrite("tests.conftest_payload")

from tests.conftest_payload import MOVIELENS, call_main, make_bundle  # noqa: E402

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:.*is deprecated and will be removed in v6:FutureWarning"),
]


def test_a_generation_recipe_trains_without_style_tokens_and_reports_its_answers(tiny_model_dir, tmp_path, capsys):
    from remote_payload import evaluate, train

    overrides = {"task": "generation", "max_steps": 4, "save_steps": 4, "logging_steps": 2,
                 "evaluation": {"max_new_tokens": 6, "samples": 6, "after_train": True}}
    bundle = make_bundle(tmp_path / "bundle", MOVIELENS["eval"], overrides=overrides,
                         eval_dataset=MOVIELENS["eval"])
    run_dir = tmp_path / "runs" / "gen"
    assert call_main(train.main, ["--job", str(bundle / "job.json"), "--model-dir", str(tiny_model_dir),
                                  "--run-dir", str(run_dir)]) == 0
    record = json.loads((run_dir / "run.json").read_text())
    assert record["recipe"]["task"] == "generation" and record["style_tokens"] is None
    assert record["eval"] == {"task": "generation", "samples": 6, "mean_tokens": record["eval"]["mean_tokens"],
                              "pass_rate": None, "passed": True}
    capsys.readouterr()
    out = tmp_path / "eval.json"
    code = call_main(evaluate.main, ["--model-dir", str(tiny_model_dir), "--adapter", str(run_dir / "adapter"),
                                     "--out", str(out), "--job", str(bundle / "job.json"), "--samples", "3"])
    text = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert code == 0 and report["samples"] == 3 and report["validators"] == [] and report["passed"]
    assert all(0 <= a["tokens"] <= 6 and "validators" in a for a in report["answers"])
    assert "no validators configured (evaluation.validators): nothing is gated" in text
