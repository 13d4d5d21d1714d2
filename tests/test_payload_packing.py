"""Packing puts several examples in one sequence without attention or loss crossing their boundaries: with the
sdpa and eager attention of transformers 5.23 on CPU, an example's logits do not depend on the example packed
before it, the packed loss of the demo set equals the unpacked loss, and far fewer tokens are computed."""

from __future__ import annotations

import json

import pytest

pytest.register_assert_rewrite("tests.conftest_payload")

from tests.conftest_payload import DEMO_DATASET, call_main, isolated_process_state, make_bundle  # noqa: E402

pytestmark = [
    pytest.mark.timeout(600),
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:.*is deprecated and will be removed in v6:FutureWarning"),
]

# float32 on CPU: the same example's logits alone and packed differ only by summation order (~1e-6)
LOGIT_TOLERANCE = 1e-4
LOSS_TOLERANCE = 1e-4        # relative, on the mean token loss of the whole demo set


def test_best_fit_packing_places_every_example_once_within_max_length():
    from remote_payload.packing import pack_indices

    lengths = [120, 30, 200, 60, 60, 250, 10, 90, 140, 5]
    packs = pack_indices(lengths, 256)
    assert sorted(i for p in packs for i in p) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in p) <= 256 for p in packs)
    assert len(packs) == 4 and packs == pack_indices(lengths, 256)  # 965 tokens: 4 packs of 256 is the least


def _four_bit_model(model_dir, attention: str):
    from remote_payload.modeling import load_base_model
    from remote_payload.recipes import load_recipe

    model = load_base_model(model_dir, load_recipe("tiny-verbosity"), attention)
    model.eval()
    return model


def _logits(model, ids: list[int], positions: list[int] | None = None):
    import torch

    kwargs = {"position_ids": torch.tensor([positions])} if positions is not None else {}
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids]), **kwargs).logits[0]


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_changing_example_a_does_not_change_the_logits_of_example_b_packed_after_it(tiny_model_dir, attention):
    import torch

    from remote_payload.modeling import load_tokenizer

    tokenizer = load_tokenizer(tiny_model_dir)
    a, a2, b = (tokenizer(t, add_special_tokens=False)["input_ids"] for t in (
        "What is the capital of France? Paris.", "Name three animals that live in the sea, please.",
        "How many legs does a spider have? Eight legs."))
    with isolated_process_state():
        model = _four_bit_model(tiny_model_dir, attention)
        alone = _logits(model, b)
        after_a = _logits(model, a + b, list(range(len(a))) + list(range(len(b))))[len(a):]
        after_a2 = _logits(model, a2 + b, list(range(len(a2))) + list(range(len(b))))[len(a2):]
        leaking = _logits(model, a + b)[len(a):]      # no restart of the positions: B sees A
    assert torch.allclose(after_a, alone, atol=LOGIT_TOLERANCE)
    assert torch.allclose(after_a2, alone, atol=LOGIT_TOLERANCE)
    assert not torch.allclose(leaking, alone, atol=1e-2)  # the check would see a leak
    model.config.use_cache = True                          # as every reloaded adapter is, for generation
    with torch.no_grad():
        cached = model(input_ids=torch.tensor([a + b]), position_ids=torch.tensor(
            [list(range(len(a))) + list(range(len(b)))])).logits[0][len(a):]
    assert not torch.allclose(cached, alone, atol=1e-2)   # with a KV cache transformers does not see the packs:
    # hence PackedCollator's use_cache=False


def _summed_loss(model, batch) -> tuple[float, int]:
    import torch
    import torch.nn.functional as F

    labels = batch.pop("labels")
    with torch.no_grad():
        logits = model(**batch).logits.float()
    shifted = labels[:, 1:].reshape(-1)
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), shifted, ignore_index=-100,
                           reduction="sum")
    return loss.item(), int((shifted != -100).sum())


def test_the_packed_loss_of_the_demo_set_equals_the_unpacked_loss_with_far_fewer_tokens(trained_run):
    from remote_payload.dataset import load_dataset
    from remote_payload.features import Collator, FeatureDataset, build_features
    from remote_payload.modeling import load_for_inference
    from remote_payload.packing import PackedCollator, PackedDataset

    with isolated_process_state():
        model, tokenizer, recipe, _ = load_for_inference(trained_run.model_dir, trained_run.adapter)
        features = build_features(tokenizer, load_dataset(DEMO_DATASET).examples, recipe.chat_template_kwargs,
                                  recipe.max_length).features
        plain, pad = FeatureDataset(features), Collator(tokenizer.pad_token_id)
        packed = PackedDataset(features, recipe.max_length)
        assert model.config.use_cache   # reloaded for generation: the packed batches must switch the cache off
        totals = {}
        for name, dataset, collate in (("unpacked", plain, pad),
                                       ("packed", packed, PackedCollator(tokenizer.pad_token_id)),
                                       ("flat", packed, PackedCollator(tokenizer.pad_token_id, flash_attention=True))):
            loss = tokens = computed = 0
            for start in range(0, len(dataset), 8):
                batch = collate([dataset[i] for i in range(start, min(start + 8, len(dataset)))])
                computed += batch["input_ids"].numel()
                part, count = _summed_loss(model, batch)
                loss, tokens = loss + part, tokens + count
            totals[name] = (loss / tokens, tokens, computed, len(dataset))
    (unpacked, trained, padded, rows), (packed_loss, packed_trained, computed, packs) = totals["unpacked"], \
        totals["packed"]
    flat_loss, flat_trained, flat, _ = totals["flat"]
    print(f"\nmean token loss unpacked {unpacked:.6f} packed {packed_loss:.6f} flat {flat_loss:.6f} "
          f"(relative difference {abs(packed_loss - unpacked) / unpacked:.2e}, {abs(flat_loss - unpacked) / unpacked:.2e}"
          f"); tokens computed per epoch {padded} -> {computed} packed, {flat} flat ({computed / padded:.2f}x); "
          f"{rows} examples in {packs} packs")
    assert packed_trained == flat_trained == trained
    assert abs(packed_loss - unpacked) <= LOSS_TOLERANCE * unpacked
    assert abs(flat_loss - unpacked) <= LOSS_TOLERANCE * unpacked    # the flash_attention_2 layout, on sdpa
    assert flat == sum(len(f.input_ids) for f in features) <= computed < 0.75 * padded
    assert packs < rows / 2


def test_a_packed_training_run_records_its_packs_and_trains(tiny_model_dir, tmp_path):
    from remote_payload import train

    bundle = make_bundle(tmp_path / "bundle", DEMO_DATASET,
                         overrides={"packing": True, "max_steps": 12, "logging_steps": 4, "save_steps": 12,
                                    "evaluation": {"after_train": False}})
    run_dir = tmp_path / "runs" / "packed"
    assert call_main(train.main, ["--job", str(bundle / "job.json"), "--model-dir", str(tiny_model_dir),
                                  "--run-dir", str(run_dir)]) == 0
    record = json.loads((run_dir / "run.json").read_text())
    packing = record["packing"]
    assert packing["examples"] == 388 and packing["packs"] < 388 / 2 and packing["max_tokens_per_pack"] <= 256
    steps = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [s["loss"] for s in steps if s["event"] == "step"]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert record["training"]["global_step"] == 12 and (run_dir / "adapter" / "manifest.json").is_file()
