"""Tokenized features are cached under a key of everything they depend on, so an entry is reused exactly when
nothing changed, and a change (data, max_length, chat template, label words) never reads a stale entry."""

from __future__ import annotations

import dataclasses
import json

import pytest

pytest.register_assert_rewrite("tests.conftest_payload")

from tests.conftest_payload import MOVIELENS, make_bundle  # noqa: E402

pytestmark = pytest.mark.timeout(300)


def prepare(bundle, model_dir, cache_dir, run_dir):
    from remote_payload.job import read_job
    from remote_payload.preprocess import prepare_data
    from remote_payload.runrecord import RunRecord

    job = read_job(bundle / "job.json")
    record = RunRecord(run_dir)
    record.start({}, [], False, 0)
    data = prepare_data(job, job.recipe(), str(model_dir), record, cache_dir)
    return data, record.data


def test_a_second_preparation_reads_the_cache_and_gets_identical_features(tmp_path, tiny_classifier_dir):
    bundle = make_bundle(tmp_path / "bundle", MOVIELENS["train"], recipe="tiny-movielens",
                         eval_dataset=MOVIELENS["eval"])
    first, record1 = prepare(bundle, tiny_classifier_dir, tmp_path / "cache", tmp_path / "r1")
    second, record2 = prepare(bundle, tiny_classifier_dir, tmp_path / "cache", tmp_path / "r2")
    assert (record1["dataset"]["cache"]["hit"], record2["dataset"]["cache"]["hit"]) == (False, True)
    assert record2["eval_dataset"]["hit"] is True
    assert second.train.features == first.train.features and second.train.overlength == first.train.overlength
    assert {f.label for f in second.train.features} == {"Yes", "No"}      # the label words come back too


def test_changing_max_length_or_the_data_gives_a_new_cache_entry(tmp_path, tiny_classifier_dir):
    bundle = make_bundle(tmp_path / "bundle", MOVIELENS["train"], recipe="tiny-movielens",
                         eval_dataset=MOVIELENS["eval"])
    _, base = prepare(bundle, tiny_classifier_dir, tmp_path / "cache", tmp_path / "r1")
    job = json.loads((bundle / "job.json").read_text())
    (bundle / "job.json").write_text(json.dumps({**job, "overrides": {"max_length": 200}}))
    _, shorter = prepare(bundle, tiny_classifier_dir, tmp_path / "cache", tmp_path / "r2")
    assert shorter["dataset"]["cache"]["hit"] is False
    assert shorter["dataset"]["cache"]["key"] != base["dataset"]["cache"]["key"]
    assert shorter["dataset"]["dropped_overlength"] > 0 == base["dataset"]["dropped_overlength"]
    data = bundle / "data" / MOVIELENS["train"].name
    data.write_text("".join(data.read_text().splitlines(keepends=True)[:100]))
    (bundle / "job.json").write_text(json.dumps(job))
    _, fewer = prepare(bundle, tiny_classifier_dir, tmp_path / "cache", tmp_path / "r3")
    assert fewer["dataset"]["cache"]["hit"] is False and fewer["dataset"]["trained_examples"] == 100


def test_the_key_covers_the_chat_template_labels_and_system_prompt(tiny_classifier_dir):
    from remote_payload.feature_cache import cache_key
    from remote_payload.modeling import chat_template_sha256, load_tokenizer
    from remote_payload.recipes import load_recipe

    tokenizer, recipe = load_tokenizer(tiny_classifier_dir), load_recipe("tiny-movielens")
    key = cache_key("0" * 64, tokenizer, recipe, chat_template_sha256(tokenizer))
    assert key == cache_key("0" * 64, tokenizer, recipe, chat_template_sha256(tokenizer))
    changed = [cache_key("0" * 64, tokenizer, recipe, "other-template"),
               cache_key("1" * 64, tokenizer, recipe, chat_template_sha256(tokenizer)),
               cache_key("0" * 64, tokenizer, dataclasses.replace(recipe, system_prompt="Be brief."),
                         chat_template_sha256(tokenizer)),
               cache_key("0" * 64, tokenizer, load_recipe("tiny-movielens", {"evaluation": {"positive": "Like",
                                                                                           "negative": "Dislike"}}),
                         chat_template_sha256(tokenizer))]
    tokenizer.add_tokens(["<extra>"])
    changed.append(cache_key("0" * 64, tokenizer, recipe, chat_template_sha256(tokenizer)))
    assert len({key, *changed}) == 6


def test_clearing_the_cache_removes_every_entry(tmp_path, tiny_classifier_dir):
    from remote_payload.feature_cache import FeatureCache

    bundle = make_bundle(tmp_path / "bundle", MOVIELENS["eval"], recipe="tiny-movielens",
                         eval_dataset=MOVIELENS["eval"])
    prepare(bundle, tiny_classifier_dir, tmp_path / "cache", tmp_path / "r1")
    assert any((tmp_path / "cache").iterdir())
    FeatureCache(tmp_path / "cache").clear()
    assert not (tmp_path / "cache").exists()
    _, again = prepare(bundle, tiny_classifier_dir, tmp_path / "cache", tmp_path / "r2")
    assert again["dataset"]["cache"]["hit"] is False
