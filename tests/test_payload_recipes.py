"""Recipes load with the golden values, accept typed overrides, and refuse bad fields by name."""

from __future__ import annotations

import dataclasses
import json

import pytest

from remote_payload.errors import JobError, RecipeError
from remote_payload.job import read_job
from remote_payload.recipes import available_recipes, load_recipe, recipe_from_dict

pytestmark = pytest.mark.timeout(30)


def test_every_registered_recipe_loads_and_names_itself():
    assert available_recipes() == ["mistral-7b-verbosity", "qwen3-0.6b-movielens", "qwen3-14b-iac",
                                   "qwen3-14b-verbosity", "qwen3-8b-movielens", "tiny-iac", "tiny-movielens",
                                   "tiny-verbosity"]
    for name in available_recipes():
        assert load_recipe(name).name == name


def test_qwen_recipe_carries_the_seed_000_golden_values():
    r = load_recipe("qwen3-14b-verbosity")
    assert (r.bnb_4bit_quant_type, r.bnb_4bit_use_double_quant, r.compute_dtype, r.device) == \
        ("nf4", True, "bfloat16", "cuda")
    assert (r.lora_r, r.lora_alpha, r.lora_dropout, r.lora_targets) == (16, 32, 0.05, "all-linear")
    assert (r.learning_rate, r.num_train_epochs, r.per_device_train_batch_size, r.gradient_accumulation_steps) == \
        (2e-4, 2.0, 1, 16)
    assert (r.lr_scheduler_type, r.warmup_ratio, r.gradient_checkpointing, r.max_length, r.seed) == \
        ("cosine", 0.03, True, 1024, 42)
    assert r.chat_template_kwargs == {"enable_thinking": False}
    assert r.evaluation.terse.generate_kwargs() == {"max_new_tokens": 20, "do_sample": False}
    assert r.evaluation.verbose.generate_kwargs() == {"max_new_tokens": 100, "min_new_tokens": 30, "do_sample": True,
                                                "temperature": 0.7, "top_p": 0.95}


def test_mistral_recipe_uses_seed_002_modules_and_presets():
    r = load_recipe("mistral-7b-verbosity")
    assert r.lora_targets == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert r.num_train_epochs == 1.0 and r.chat_template_kwargs == {}
    assert r.evaluation.terse.generate_kwargs()["temperature"] == 0.1
    assert r.evaluation.verbose.min_new_tokens == 64 and r.evaluation.verbose.max_new_tokens == 256


def test_overrides_replace_values_and_int_is_accepted_for_float_fields():
    r = load_recipe("qwen3-14b-verbosity", {"learning_rate": 1, "max_length": 2048, "save_steps": 10})
    assert r.learning_rate == 1.0 and isinstance(r.learning_rate, float)
    assert (r.max_length, r.save_steps) == (2048, 10)
    assert load_recipe("qwen3-14b-verbosity").learning_rate == 2e-4  # the registered recipe is untouched


def test_a_preset_override_merges_into_the_recipe_preset():
    r = load_recipe("qwen3-14b-verbosity", {"eval_verbose": {"max_new_tokens": 300}})
    assert r.evaluation.verbose.max_new_tokens == 300 and r.evaluation.verbose.min_new_tokens == 30


def test_a_list_override_becomes_the_lora_target_tuple():
    r = load_recipe("tiny-verbosity", {"lora_target_modules": ["q_proj", "v_proj"]})
    assert r.lora_target_modules == ("q_proj", "v_proj") and r.lora_targets == ["q_proj", "v_proj"]


def test_an_unknown_field_is_refused_by_name_with_a_suggestion():
    with pytest.raises(RecipeError) as err:
        load_recipe("qwen3-14b-verbosity", {"lerning_rate": 1e-4})
    assert "unknown recipe field 'lerning_rate'" in str(err.value)
    assert "did you mean 'learning_rate'?" in str(err.value)


def test_an_unknown_preset_field_is_refused_by_name():
    with pytest.raises(RecipeError, match="unknown 'eval_terse' field 'max_tokens'"):
        load_recipe("qwen3-14b-verbosity", {"eval_terse": {"max_tokens": 5}})


@pytest.mark.parametrize("field, value, words", [
    ("max_length", "1024", "field 'max_length' must be int, got str '1024'"),
    ("max_length", 1024.0, "field 'max_length' must be int, got float"),
    ("lora_r", True, "field 'lora_r' must be int, got bool"),
    ("bf16", "yes", "field 'bf16' must be bool"),
    ("learning_rate", "2e-4", "field 'learning_rate' must be float"),
    ("lora_target_modules", "q_proj", "field 'lora_target_modules' must be tuple"),
    ("chat_template_kwargs", ["enable_thinking"], "field 'chat_template_kwargs' must be dict"),
])
def test_an_ill_typed_override_is_refused_naming_the_field(field, value, words):
    with pytest.raises(RecipeError) as err:
        load_recipe("qwen3-14b-verbosity", {field: value})
    assert words in str(err.value)
    assert "recipe 'qwen3-14b-verbosity'" in str(err.value)


@pytest.mark.parametrize("overrides, words", [
    ({"learning_rate": 0}, "field 'learning_rate' must be > 0"),
    ({"lora_dropout": 1.0}, "field 'lora_dropout' must be in [0, 1)"),
    ({"device": "tpu"}, "field 'device' must be one of cuda, cpu"),
    ({"lr_scheduler_type": "cosine_warm"}, "field 'lr_scheduler_type' must be one of"),
    ({"max_steps": 0}, "field 'max_steps' must be -1"),
    ({"compute_dtype": "float32"}, "field 'bf16' is true but compute_dtype is 'float32'"),
    ({"on_overlength": "truncate"}, "field 'on_overlength' must be one of drop, error"),
    ({"eval_terse": {"min_new_tokens": 50}}, "field 'min_new_tokens' must be between 0 and max_new_tokens=20"),
])
def test_an_out_of_range_value_is_refused_naming_the_field(overrides, words):
    with pytest.raises(RecipeError) as err:
        load_recipe("qwen3-14b-verbosity", overrides)
    assert words in str(err.value)


def test_an_unknown_recipe_name_lists_the_available_ones():
    with pytest.raises(RecipeError) as err:
        load_recipe("qwen3-14b")
    assert "unknown recipe 'qwen3-14b'" in str(err.value) and "tiny-verbosity" in str(err.value)


def test_the_name_of_a_recipe_cannot_be_overridden():
    with pytest.raises(RecipeError, match="unknown recipe field 'name'"):
        load_recipe("tiny-verbosity", {"name": "other"})


def test_a_resolved_recipe_round_trips_through_json():
    r = load_recipe("mistral-7b-verbosity", {"max_length": 512, "eval_terse": {"max_new_tokens": 16}})
    again = recipe_from_dict(json.loads(json.dumps(r.to_dict())))
    assert again == r and dataclasses.asdict(again) == r.to_dict()


def test_job_file_resolves_the_dataset_next_to_it_and_applies_overrides(tmp_path):
    (tmp_path / "job.json").write_text(json.dumps({"job": "demo", "recipe": "tiny-verbosity",
                                                   "overrides": {"max_steps": 5}, "dataset": "data/x.jsonl"}))
    job = read_job(tmp_path / "job.json")
    assert job.dataset == tmp_path / "data" / "x.jsonl"
    assert job.recipe().max_steps == 5


@pytest.mark.parametrize("doc, words", [
    ({"job": "j", "recipe": "tiny-verbosity", "dataset": "/abs/x.jsonl"}, "must be relative to the job file"),
    ({"job": "j", "recipe": "tiny-verbosity"}, '"dataset" must be a non-empty string'),
    ({"job": "j", "recipe": "tiny-verbosity", "dataset": "x", "overrides": [1]}, '"overrides" must be an object'),
    ({"job": "j", "recipe": "tiny-verbosity", "dataset": "x", "model": "m"}, "unknown key 'model'"),
])
def test_a_malformed_job_file_is_refused_with_the_reason(tmp_path, doc, words):
    (tmp_path / "job.json").write_text(json.dumps(doc))
    with pytest.raises(JobError) as err:
        read_job(tmp_path / "job.json")
    assert words in str(err.value)


# --- tasks ----------------------------------------------------------------------------------------------------

def test_every_recipe_names_its_task_and_carries_that_tasks_evaluation_section():
    from remote_payload.recipes import SECTIONS

    tasks = {name: load_recipe(name).task for name in available_recipes()}
    assert tasks == {"mistral-7b-verbosity": "verbosity", "qwen3-14b-verbosity": "verbosity",
                     "tiny-verbosity": "verbosity", "qwen3-0.6b-movielens": "classification",
                     "qwen3-8b-movielens": "classification", "tiny-movielens": "classification",
                     "qwen3-14b-iac": "verbosity", "tiny-iac": "verbosity"}
    for name, task in tasks.items():
        assert isinstance(load_recipe(name).evaluation, SECTIONS[task])


def test_the_movielens_recipes_carry_seed_003s_numbers():
    small, large = load_recipe("qwen3-0.6b-movielens"), load_recipe("qwen3-8b-movielens")
    for r in (small, large):
        assert (r.max_length, r.learning_rate, r.lora_r, r.lora_alpha, r.lora_dropout, r.lora_targets) == \
            (1024, 1.5e-4, 16, 64, 0.05, "all-linear")
        assert (r.per_device_train_batch_size, r.gradient_accumulation_steps, r.lr_scheduler_type,
                r.warmup_ratio) == (2, 8, "cosine", 0.03)
        assert (r.eval_steps, r.eval_max_samples, r.evaluation.batch_size, r.save_steps, r.save_total_limit) == \
            (2000, 1000, 16, 4000, 2)
        assert (r.early_stopping_patience, r.metric_for_best_model, r.load_best_model_at_end) == (3, "f1", True)
        assert (r.evaluation.positive, r.evaluation.negative, r.evaluation.max_new_tokens) == ("Yes", "No", 8)
        assert r.chat_template_kwargs == {"enable_thinking": False} and r.attn_implementation == "auto"
        assert r.system_prompt.startswith("You are a movie recommendation assistant")
    assert (small.gradient_checkpointing, large.gradient_checkpointing) == (False, True)


def test_flat_evaluation_overrides_of_existing_job_files_map_onto_the_section():
    r = load_recipe("qwen3-14b-verbosity", {"eval_gate": 2.5, "eval_batch_size": 4, "eval_after_train": False,
                                            "eval_terse": {"max_new_tokens": 12}})
    assert (r.evaluation.gate, r.evaluation.batch_size, r.evaluation.after_train) == (2.5, 4, False)
    assert r.evaluation.terse.max_new_tokens == 12 and r.evaluation.terse.do_sample is False
    assert r == load_recipe("qwen3-14b-verbosity", {"evaluation": {"gate": 2.5, "batch_size": 4, "after_train": False,
                                                                   "terse": {"max_new_tokens": 12}}})


@pytest.mark.parametrize("overrides, words", [
    ({"evaluation": {"gatee": 2}}, "unknown 'evaluation' field 'gatee'"),
    ({"eval_gate": 0}, "field 'gate' must be > 0"),
    ({"eval_terse": {"max_new_tokens": 0}}, "field 'max_new_tokens' must be > 0"),
])
def test_an_evaluation_override_is_checked_and_refused_by_name(overrides, words):
    with pytest.raises(RecipeError) as err:
        load_recipe("tiny-verbosity", overrides)
    assert words in str(err.value)


@pytest.mark.parametrize("overrides, words", [
    ({"evaluation": {"gate": 3.0}}, "field 'gate' must be in [0, 1]: it is a minimum accuracy"),
    ({"evaluation": {"gate_metric": "auc"}}, "field 'gate_metric' must be one of accuracy, f1, precision, recall"),
    ({"evaluation": {"negative": "yes"}}, "field 'negative' must differ from positive"),
    ({"eval_terse": {"max_new_tokens": 5}}, "field 'eval_terse' does not apply to a ClassificationEval section"),
    ({"metric_for_best_model": "ratio"}, "field 'metric_for_best_model' must be one of loss, accuracy, f1"),
    ({"save_steps": 3000}, "field 'save_steps' must be a multiple of eval_steps=2000"),
    ({"eval_steps": 0}, "field 'early_stopping_patience' needs evaluation during training"),
    ({"attn_implementation": "flash"}, "field 'attn_implementation' must be one of auto, flash_attention_2"),
    ({"task": "ranking"}, "field 'task' must be one of verbosity, classification, generation"),
])
def test_a_classification_recipe_refuses_bad_values_by_name(overrides, words):
    with pytest.raises(RecipeError) as err:
        load_recipe("qwen3-0.6b-movielens", overrides)
    assert words in str(err.value)


def test_changing_the_task_starts_from_that_tasks_evaluation_defaults():
    from remote_payload.recipes import GenerationEval

    r = load_recipe("tiny-verbosity", {"task": "generation", "evaluation": {"max_new_tokens": 64}})
    assert r.task == "generation" and r.evaluation == GenerationEval(max_new_tokens=64)
    with pytest.raises(RecipeError, match="unknown validator 'terraform'"):
        load_recipe("tiny-verbosity", {"task": "generation", "evaluation": {"validators": ["terraform"]}})


def test_a_recipe_stored_before_tasks_existed_still_rebuilds():
    stored = load_recipe("tiny-verbosity").to_dict()
    section = stored.pop("evaluation")
    for field in ("task", "attn_implementation", "system_prompt", "packing", "eval_steps", "eval_max_samples",
                  "early_stopping_patience", "metric_for_best_model", "load_best_model_at_end"):
        stored.pop(field)
    old = {**stored, "eval_terse": section["terse"], "eval_verbose": section["verbose"], "eval_gate": 3.0,
           "eval_batch_size": 25, "eval_after_train": True}
    assert recipe_from_dict(json.loads(json.dumps(old))) == load_recipe("tiny-verbosity")


def test_a_classification_recipe_round_trips_through_json():
    r = load_recipe("qwen3-8b-movielens", {"evaluation": {"gate": 0.7}, "packing": True})
    assert recipe_from_dict(json.loads(json.dumps(r.to_dict()))) == r


def test_the_stage2_iac_recipe_has_seed_001s_stage2_numbers():
    r = load_recipe("qwen3-14b-iac")
    assert (r.learning_rate, r.num_train_epochs, r.per_device_train_batch_size, r.gradient_accumulation_steps) == \
        (1.5e-4, 1.0, 1, 16)
    assert r.gradient_checkpointing and r.max_length == 3072 and r.packing
    assert (r.lr_scheduler_type, r.warmup_ratio, r.seed) == ("cosine", 0.03, 42)
    assert r.uses_style_tokens and r.evaluation.gate == 3.0     # the style rows keep training; the gate is rechecked
