"""YAML recipes on the controller: `base:` + any fields, checked like built-ins with file:line errors, resolved
into the built-in name + overrides that job.json carries; `orch recipes` lists the built-ins and `orch show`
says where every recipe field came from."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.timeout(120)

DEMO = ROOT / "training_data"

INVENTORY = """\
instances:
  box:
    transport: local
    work_dir: work
    models_dir: models
    imds_url: ""
jobs:
  ml:
    instance: box
    recipe: recipes/movielens.yaml
    dataset: data/movielens_demo_train.jsonl
    eval_dataset: data/movielens_demo_eval.jsonl
    weights: s3://example-bucket/models/tiny/
    overrides:
      learning_rate: 2.0e-4
    eval_gate: 0.7
  old:
    instance: box
    recipe: tiny-verbosity
    dataset: data/verbosity_demo.jsonl
    weights: s3://example-bucket/models/tiny/
    overrides: {eval_verbose: {max_new_tokens: 64}, max_steps: 10}
"""

RECIPE = """\
# the user's own MovieLens recipe
base: qwen3-0.6b-movielens
learning_rate: 1.0e-4
max_length: 512
evaluation:
  samples: 200
  gate_metric: f1
"""


@pytest.fixture
def ml_project(project):
    for name in ("movielens_demo_train.jsonl", "movielens_demo_eval.jsonl", "verbosity_demo.jsonl"):
        (project.root / "data").mkdir(exist_ok=True)
        shutil.copy(DEMO / name, project.root / "data" / name)
    project.write("inventory.yaml", INVENTORY)
    project.write("recipes/movielens.yaml", RECIPE)
    return project


def load_job(project, name):
    from orchestrator.inventory import load_inventory

    return load_inventory(project.root / "inventory.yaml").job(name)


def test_orch_recipes_lists_every_built_in_with_its_task(project):
    run = project.orch("recipes", "--json")
    assert run.code == 0, run.stderr
    found = {r["name"]: r["task"] for r in run.json()["recipes"]}
    assert found == {"mistral-7b-verbosity": "verbosity", "qwen3-14b-verbosity": "verbosity",
                     "tiny-verbosity": "verbosity", "qwen3-0.6b-movielens": "classification",
                     "qwen3-8b-movielens": "classification", "tiny-movielens": "classification",
                     "qwen3-14b-iac": "verbosity", "tiny-iac": "verbosity"}
    table = project.orch("recipes")
    assert table.code == 0 and "qwen3-8b-movielens" in table.stderr and "classification" in table.stderr


def test_a_yaml_recipe_resolves_to_its_base_plus_overrides_with_each_fields_origin(ml_project, monkeypatch):
    from orchestrator.recipe_files import resolve_job_recipe

    monkeypatch.chdir(ml_project.root)
    resolved = resolve_job_recipe(load_job(ml_project, "ml"))
    recipe = resolved.recipe
    assert resolved.base == "qwen3-0.6b-movielens" and recipe.task == "classification"
    assert (recipe.learning_rate, recipe.max_length, recipe.evaluation.samples) == (2e-4, 512, 200)
    assert (recipe.evaluation.gate_metric, recipe.evaluation.gate) == ("f1", 0.7)
    yaml_file = "recipes/movielens.yaml"    # relative to where orch runs
    assert resolved.origins["max_length"] == f"{yaml_file}:4"
    assert resolved.origins["evaluation.samples"] == f"{yaml_file}:6"
    assert resolved.origins["learning_rate"] == "inventory.yaml:15 (jobs.ml.overrides.learning_rate)"
    assert resolved.origins["evaluation.gate"] == "inventory.yaml:16 (jobs.ml.eval_gate)"
    assert resolved.origins["lora_alpha"].startswith("built-in qwen3-0.6b-movielens (remote_payload/recipes/")
    assert resolved.overrides == {"learning_rate": 2e-4, "max_length": 512,
                                  "evaluation": {"samples": 200, "gate_metric": "f1", "gate": 0.7}}


def test_job_json_carries_the_built_in_name_the_merged_overrides_and_both_datasets(ml_project, monkeypatch):
    from orchestrator.bundle import job_document

    from remote_payload.recipes import load_recipe

    monkeypatch.chdir(ml_project.root)

    doc, files = job_document(load_job(ml_project, "ml"))
    assert doc["recipe"] == "qwen3-0.6b-movielens" and doc["eval_dataset"] == "data/eval/movielens_demo_eval.jsonl"
    assert load_recipe(doc["recipe"], doc["overrides"]).evaluation.samples == 200   # the payload needs no YAML
    assert doc["recipe_source"]["file"] == "recipes/movielens.yaml"
    assert doc["recipe_source"]["origins"]["max_length"].endswith("movielens.yaml:4")
    assert sorted(files) == ["data/eval/movielens_demo_eval.jsonl", "data/movielens_demo_train.jsonl"]


def test_an_existing_job_file_gives_the_same_job_json_as_before(ml_project):
    from orchestrator.bundle import job_document

    doc, _ = job_document(load_job(ml_project, "old"))
    assert doc == {"job": "old", "recipe": "tiny-verbosity", "dataset": "data/verbosity_demo.jsonl",
                   "overrides": {"eval_verbose": {"max_new_tokens": 64}, "max_steps": 10}}


def test_orch_show_prints_the_resolved_recipe_and_where_each_field_came_from(ml_project):
    run = ml_project.orch("show", "ml", "--json")
    assert run.code == 0, run.stderr
    fields = run.json()["recipe"]["fields"]
    assert fields["max_length"] == {"value": 512, "from": "recipes/movielens.yaml:4"}
    assert fields["evaluation.gate"]["value"] == 0.7 and fields["task"]["value"] == "classification"
    legacy = ml_project.orch("show", "old", "--json").json()["recipe"]["fields"]
    assert legacy["evaluation.verbose.max_new_tokens"] == {
        "value": 64, "from": "inventory.yaml:22 (jobs.old.overrides.eval_verbose)"}
    table = ml_project.orch("show", "ml")
    assert table.code == 0 and "recipe qwen3-0.6b-movielens (task classification, from" in table.stderr
    assert "movielens.yaml:4" in table.stderr


@pytest.mark.parametrize("recipe, words", [
    ("base: qwen3-0.6b-movielens\nlerning_rate: 1.0e-4\n",
     "movielens.yaml:2: unknown recipe field 'lerning_rate'"),
    ("base: qwen3-0.6b-movielens\nlearning_rate: 1e-4\n",
     "movielens.yaml:2: recipe 'qwen3-0.6b-movielens': field 'learning_rate' must be float, got str '1e-4'"),
    ("base: qwen3-0.6b-movielens\nevaluation:\n  samples: 10\n  gate: 7\n",
     "movielens.yaml:4: recipe 'qwen3-0.6b-movielens', evaluation: evaluation (classification): field 'gate'"),
    ("base: qwen3-0.6b-movielens\nevaluation:\n  terse: {max_new_tokens: 4}\n",
     "movielens.yaml:3: unknown 'evaluation' field 'terse'"),
    ("base: qwen3-1b\n", "movielens.yaml:1: unknown recipe 'qwen3-1b'"),
    ("learning_rate: 1.0e-4\n", "movielens.yaml:1: `base:` must name a built-in recipe"),
    ("base: [oops\n", "movielens.yaml:2: malformed YAML"),
])
def test_a_bad_yaml_recipe_is_refused_before_anything_connects_naming_file_and_line(ml_project, recipe, words):
    ml_project.write("recipes/movielens.yaml", recipe)
    run = ml_project.orch("deploy", "ml")
    assert run.code == 2, run.stderr
    assert words in run.stderr
    if "1e-4" in recipe:
        assert "write a number with a dot, e.g. 1.0e-04" in run.stderr


def test_a_classification_job_without_an_eval_dataset_is_refused_with_how_to_fix_it(ml_project):
    ml_project.write("inventory.yaml", INVENTORY.replace("    eval_dataset: data/movielens_demo_eval.jsonl\n", ""))
    run = ml_project.orch("deploy", "ml")
    assert run.code == 2
    assert "evaluates every 2000 steps, but the job has no eval_dataset" in run.stderr
    assert "add eval_dataset: FILE to the job" in run.stderr


def test_a_bad_label_in_the_eval_dataset_is_reported_with_its_file_and_line(ml_project):
    path = ml_project.root / "data" / "movielens_demo_eval.jsonl"
    lines = path.read_text().splitlines()
    lines[2] = json.dumps({**json.loads(lines[2]), "output": "Perhaps"})
    path.write_text("\n".join(lines) + "\n")
    run = ml_project.orch("deploy", "ml")
    assert run.code == 2 and "movielens_demo_eval.jsonl:3: answer 'Perhaps' is not a label word" in run.stderr
