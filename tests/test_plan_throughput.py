"""Time per step and per epoch: the model's calibration on seed 000, what seed 000 implies, token estimates."""

from __future__ import annotations

import json
import math
from pathlib import Path

from orchestrator.plan import Setup, find_gpu, from_seqlen_report, make_plan, setup_from_recipe, shape_from_config
from orchestrator.plan.throughput import MFU, SEED_000, calibrated_eta, flops_per_micro_batch, step_time
from orchestrator.plan.tokens import TokenStats, _from_lengths, estimate_from_dataset
from remote_payload.recipes import load_recipe

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "bench" / "model_configs"
QWEN3_14B = json.loads((CONFIGS / "qwen3-14b.json").read_text())
SEED_000_SETUP = Setup(upcast_non_quantized=False, trainable_token_rows=0)   # bf16, StyleDeltaEmbedding


def test_the_step_model_reproduces_seed_000s_9_1_seconds_a_step_on_the_a10g_it_is_calibrated_on():
    shape = shape_from_config(QWEN3_14B)
    tokens = SEED_000["tokens_per_sequence"]
    timing = step_time(shape, SEED_000_SETUP, find_gpu("A10G"), tokens, tokens)
    assert abs(timing.seconds_per_step - 9.1) < 0.05
    assert 0.5 < calibrated_eta() < 0.85                 # a plausible fraction of the datasheet bandwidth
    assert timing.weights_s > 3 * timing.compute_s        # seed 000's steps were spent streaming weights


def test_seed_000_cannot_have_been_16_full_1024_token_sequences_a_step():
    shape = shape_from_config(QWEN3_14B)
    flops = 16 * flops_per_micro_batch(shape, SEED_000_SETUP, 1024, 1024)
    assert flops / SEED_000["seconds_per_step"] > find_gpu("A10G").bf16_tflops * 1e12   # above the A10G's peak


def test_seed_000s_token_count_matches_the_example_pairs_in_the_users_format():
    stats = estimate_from_dataset(ROOT / "training_data" / "verbosity_pairs_example.jsonl", "qwen3")
    # the example pairs carry a system prompt (~12 tokens) that seed 000's "nosys" pairs did not
    assert abs((stats.mean - 12) / SEED_000["tokens_per_sequence"] - 1) < 0.25
    assert "4 characters per token" in stats.assumption


def test_longer_sequences_and_slower_gpus_take_longer_and_faster_gpus_become_dispatch_bound():
    shape = shape_from_config(QWEN3_14B)
    setup = setup_from_recipe(load_recipe("qwen3-14b-verbosity"))
    a10g = step_time(shape, setup, find_gpu("A10G"), 1024, 1024)
    l4 = step_time(shape, setup, find_gpu("L4"), 1024, 1024)
    h100 = step_time(shape, setup, find_gpu("H100"), 1024, 1024)
    assert l4.seconds_per_step > a10g.seconds_per_step > 4 * h100.seconds_per_step
    assert step_time(shape, setup, find_gpu("A10G"), 72, 72).seconds_per_step < a10g.seconds_per_step / 2
    assert step_time(shape, setup, find_gpu("H200"), 72, 72).dispatch_bound
    assert f"MFU {MFU:.2f}" in a10g.assumption


def test_a_plan_counts_steps_and_time_per_epoch_from_the_datasets_examples():
    lengths = [60] * 1600 + [120] * 1600                     # 3,200 examples, as in seed 000
    tokens = _from_lengths(lengths, "test", "test")
    recipe = load_recipe("qwen3-14b-verbosity")
    plan = make_plan(QWEN3_14B, recipe, gpu="A10G", tokens=tokens)
    assert plan.steps_per_epoch == 200 and plan.epochs == 2.0           # seed 000: 400 steps for 2 epochs
    assert math.isclose(plan.seconds_per_epoch, 200 * plan.time.seconds_per_step)
    assert plan.memory.seq == 120                                       # the widest micro-batch, not max_length
    eight = make_plan(QWEN3_14B, recipe, gpu="A10G", gpus=8, tokens=tokens)
    assert eight.steps_per_epoch == 25 and eight.time.allreduce_s > 0
    short = make_plan(QWEN3_14B, load_recipe("qwen3-14b-verbosity", {"max_length": 100}), gpu="A10G", tokens=tokens)
    assert short.steps_per_epoch == 100 and any("1600 of 3200" in n for n in short.notes)


def test_padded_micro_batches_are_as_wide_as_their_longest_example():
    tokens = _from_lengths(list(range(1, 101)), "test", "test")
    assert abs(tokens.expected_longest(1) - 50.5) < 1e-9
    assert 75 < tokens.expected_longest(4) < 85                          # E[max of 4 uniform] ~ 4/5 of 100
    assert tokens.expected_longest(64, cap=90) == 90
    assert abs(tokens.fraction_over(80) - 0.2) < 0.02


def test_a_seqlen_report_gives_the_real_tokenizers_counts(tmp_path):
    report = {"examples": 3200, "cutoff": 1024, "percentiles": [50, 90, 95, 99, 100],
              "total_tokens": {"min": 20.0, "max": 300.0, "mean": 72.0, "p50": 60.0, "p90": 130.0, "p95": 140.0,
                               "p99": 200.0, "p100": 300.0}}
    path = tmp_path / "seqlen.json"
    path.write_text(json.dumps(report))
    stats = from_seqlen_report(path)
    assert isinstance(stats, TokenStats) and stats.count == 3200 and stats.longest == 300
    assert stats.total == 3200 * 72 and "real tokenizer" in stats.source


def test_packing_plans_full_max_length_sequences_and_fewer_steps():
    """Issue 11's packing: the planner reads the recipe's `packing` field once it exists (Setup.packing here)."""
    tokens = _from_lengths([60] * 1600 + [120] * 1600, "test", "test")     # 288,000 tokens
    recipe = load_recipe("qwen3-14b-verbosity")
    padded = make_plan(QWEN3_14B, recipe, gpu="A10G", tokens=tokens)
    packed = make_plan(QWEN3_14B, recipe, gpu="A10G", tokens=tokens,
                       setup=setup_from_recipe(recipe).replace(packing=True))
    assert packed.memory.seq == 1024 and padded.memory.seq == 120
    assert packed.steps_per_epoch == math.ceil(288_000 / (16 * 1024)) == 18
    assert packed.seconds_per_epoch < padded.seconds_per_epoch
