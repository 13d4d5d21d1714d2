"""`orch status` of a real run trained through the CLI (tiny-movielens, cut short, on the local instance): the
best evaluation and early stopping from run.json, and the plan `orch train` made against what the run measured.
The run is shared with test_tensorboard_cli.py (tests/fixtures/classification_project.py): trained once."""

from __future__ import annotations

import json

import pytest


pytestmark = pytest.mark.timeout(900)

WIDE = {"COLUMNS": "250"}


def test_status_shows_the_best_step_and_metric_of_a_classification_run_that_stopped_early(trained_classification):
    t = trained_classification
    best = t.run_json()["best"]
    assert t.run_json()["training"]["early_stopped"] is True and best["restored"] is True
    r = t.project.orch("status", "--instance", "local", "--json")
    assert r.code == 0, r.stderr
    run = next(x for x in r.json()["runs"] if x["run_id"] == t.run_id)
    assert run["best"] == {k: best[k] for k in ("step", "metric", "value", "checkpoint", "restored")}
    assert run["best"]["metric"] == "f1" and run["early_stopped"] is True
    assert run["best"]["step"] < run["last_metrics"]["step"]            # stopped after a plateau past the best
    human = t.project.orch("status", "--instance", "local", env=WIDE)
    assert f"f1 {best['value']:.4f} at step {best['step']} (early stop)" in human.stderr


def test_the_run_records_the_plan_orch_train_made_from_the_models_config_json(
        trained_classification, classifier_weights_uri):
    t = trained_classification
    plan = t.run_json()["plan"]
    assert plan["model_config"]["source"] == f"{classifier_weights_uri}config.json"     # read with the job's S3
    assert plan["device"] == "cpu" and plan["gpu"] is None
    config = json.loads((t.project.models / "tiny-qwen3-classifier" / "config.json").read_text())
    from orchestrator.plan import setup_from_recipe, shape_from_config, states
    from remote_payload.recipes import load_recipe
    from tests.fixtures.classification_project import SHORT_RUN

    recipe = load_recipe("tiny-movielens", SHORT_RUN)
    assert plan["planned"]["trainable_params"] == states.trainable_params(shape_from_config(config),
                                                                          setup_from_recipe(recipe))
    assert plan["planned"]["steps"] == SHORT_RUN["max_steps"]
    # the planner's GPU figures do not apply to a CPU recipe: absent, with the reason, never zeros
    assert "peak_allocated_bytes" not in plan["planned"] and "trains on CPU" in plan["absent"]["gpu_memory"]


def test_status_of_one_run_shows_planned_against_measured_and_why_gpu_memory_is_absent(trained_classification):
    t = trained_classification
    r = t.project.orch("status", "--run", t.run_id, "--json")
    assert r.code == 0, r.stderr
    got = r.json()["runs"][0]["plan_check"]
    run = t.run_json()
    # the planner's LoRA count is what the payload's model holds, to the parameter
    assert got["trainable_params"] == {"planned": run["parameters"]["trainable"],
                                       "measured": run["parameters"]["trainable"], "ratio": 1.0, "why": None}
    assert got["steps"]["measured"] == run["training"]["global_step"] < got["steps"]["planned"]
    assert "early stopping" in got["steps"]["note"]
    assert got["seconds_per_step"]["planned"] is None and got["seconds_per_step"]["measured"] > 0
    for key in ("gpu_allocated_bytes", "gpu_reserved_bytes"):
        assert got[key]["planned"] is None and got[key]["measured"] is None and got[key]["ratio"] is None
        assert "trains on CPU" in got[key]["why"] and "no CUDA device" in got[key]["why"]
    human = t.project.orch("status", "--run", t.run_id, env=WIDE)
    assert human.code == 0
    table = human.stderr.split("planned vs measured", 1)[1]
    row = next(line for line in table.splitlines() if "peak GPU memory allocated" in line)
    assert " - " in row and "0.00" not in row                            # absent, not zero
    assert "no CUDA device" in table
    assert f"{run['parameters']['trainable']:,}" in table
