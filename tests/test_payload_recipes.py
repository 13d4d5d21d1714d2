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
    assert available_recipes() == ["mistral-7b-verbosity", "qwen3-14b-verbosity", "tiny-verbosity"]
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
    assert r.eval_terse.generate_kwargs() == {"max_new_tokens": 20, "do_sample": False}
    assert r.eval_verbose.generate_kwargs() == {"max_new_tokens": 100, "min_new_tokens": 30, "do_sample": True,
                                                "temperature": 0.7, "top_p": 0.95}


def test_mistral_recipe_uses_seed_002_modules_and_presets():
    r = load_recipe("mistral-7b-verbosity")
    assert r.lora_targets == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert r.num_train_epochs == 1.0 and r.chat_template_kwargs == {}
    assert r.eval_terse.generate_kwargs()["temperature"] == 0.1
    assert r.eval_verbose.min_new_tokens == 64 and r.eval_verbose.max_new_tokens == 256


def test_overrides_replace_values_and_int_is_accepted_for_float_fields():
    r = load_recipe("qwen3-14b-verbosity", {"learning_rate": 1, "max_length": 2048, "save_steps": 10})
    assert r.learning_rate == 1.0 and isinstance(r.learning_rate, float)
    assert (r.max_length, r.save_steps) == (2048, 10)
    assert load_recipe("qwen3-14b-verbosity").learning_rate == 2e-4  # the registered recipe is untouched


def test_a_preset_override_merges_into_the_recipe_preset():
    r = load_recipe("qwen3-14b-verbosity", {"eval_verbose": {"max_new_tokens": 300}})
    assert r.eval_verbose.max_new_tokens == 300 and r.eval_verbose.min_new_tokens == 30


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
