"""The planner's whole-step peak against torch's own memory profile, on CPU, for Qwen3 and Mistral blocks.

Small models of the real architectures (2 layers, hidden 256, vocabulary 4096: the logits weigh as much against
the layers as a 150k vocabulary does against 5120-wide ones) are loaded by the payload's functions and trained
for one steady-state step (two accumulated micro-batches, bf16 autocast, AdamW) under the profiler
(tests/fixtures/torch_memory.py). The planner, told it runs on CPU (dropout masks in the input's dtype, no
CUDA context), must predict the peak of live tensors within 5%: activations, logits, bf16 copies, peft's
embedding copy and the optimizer state, with and without gradient checkpointing. What differs on CUDA (a 1-byte
dropout mask, the caching allocator's slack, the CUDA context) is added on top of this by the planner.
"""

from __future__ import annotations

import json

import pytest

from orchestrator.plan import breakdown, setup_from_recipe, shape_from_config
from tests.fixtures.torch_memory import cpu_recipe, load_like_payload, measure_peak, save_random_model

SMALL = {"vocab_size": 4096, "hidden_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "head_dim": 64, "tie_word_embeddings": False, "max_position_embeddings": 1024}
CASES = {
    # a padded batch of 2: transformers' sdpa path repeats the k/v heads; no checkpointing
    "qwen3 batch 2 x 128, padded, no checkpointing": ({"model_type": "qwen3", "intermediate_size": 768}, 2, 128, False),
    # one sequence: grouped k/v heads kept as they are; checkpointing on
    "mistral batch 1 x 256, checkpointing": ({"model_type": "mistral", "intermediate_size": 896}, 1, 256, True),
}


@pytest.mark.parametrize("case", CASES)
def test_the_predicted_step_peak_is_within_5_percent_of_what_torch_allocates(case, tmp_path):
    extra, batch, seq, checkpointing = CASES[case]
    model_dir = save_random_model(tmp_path / "model", {**SMALL, **extra})
    recipe = cpu_recipe(gradient_checkpointing=checkpointing)
    measured = measure_peak(load_like_payload(model_dir, recipe), SMALL["vocab_size"], batch, seq)
    shape = shape_from_config(json.loads((model_dir / "config.json").read_text()))
    predicted = breakdown(shape, setup_from_recipe(recipe, batch=batch, max_length=seq))
    assert predicted.peak_phase == "loss"
    assert abs(predicted.peak_allocated / measured - 1) < 0.05, (predicted.phases, measured)
