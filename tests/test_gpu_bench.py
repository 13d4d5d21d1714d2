"""bench/gpu_train.py on CPU with the tiny config (so it cannot rot), and the recipe fields behind its levers."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from remote_payload.errors import RecipeError
from remote_payload.recipes import load_recipe

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "gpu_train.py"


def bench(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, str(BENCH), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_the_tiny_bench_trains_on_cpu_and_says_which_levers_are_not_available_here(tmp_path):
    out = tmp_path / "bench.json"
    run = bench("--config", "tiny", "--variants", "golden,liger,flash,paged8,packing", "--steps", "2",
                "--json", str(out))
    assert run.returncode == 0, run.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["device"] == "cpu" and doc["seed_000"]["seconds_per_step"] == 9.1
    results = {r["variant"]: r for r in doc["results"]}
    golden = results["golden"]
    assert golden["available"]
    measured = golden["measured"]
    assert measured["seconds_per_step"] > 0 and measured["tokens_per_second"] > 0
    assert len(measured["step_seconds"]) == 3 and math.isfinite(measured["loss"])
    assert golden["predicted"]["peak_allocated_gib"] > 0
    for lever in ("liger", "flash", "paged8"):
        assert not results[lever]["available"] and "no GPU here" in results[lever]["why"]
    packed = results["packing"]
    assert packed["available"] and packed["measured"]["tokens_per_second"] > 0
    assert "liger    not available here" in run.stdout and "seed 000" in run.stdout


def test_the_bench_refuses_a_real_model_without_a_gpu_saying_what_runs_here():
    run = bench("--config", "qwen3-14b")
    assert run.returncode != 0
    assert "sees none" in run.stderr and "--config tiny" in run.stderr


def test_the_bench_builds_the_same_4_bit_model_the_payload_loads(tiny_model_dir):
    """Built on the meta device and quantized while materialised, it holds what from_pretrained would."""
    import bitsandbytes as bnb

    sys.path.insert(0, str(ROOT / "bench"))
    from random_model import build_model
    from remote_payload.modeling import load_base_model

    recipe = load_recipe("tiny-verbosity")
    loaded = load_base_model(tiny_model_dir, recipe)
    built = build_model(json.loads((tiny_model_dir / "config.json").read_text()), recipe, "cpu")

    def layout(model):
        return [(name, type(m).__name__, getattr(getattr(m, "weight", None), "dtype", None),
                 getattr(getattr(m, "weight", None), "shape", None)) for name, m in model.named_modules()]

    assert layout(built) == layout(loaded)
    assert built.is_loaded_in_4bit
    for module in built.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            state = module.weight.quant_state
            assert state.quant_type == "nf4" and state.nested and state.blocksize == 64


@pytest.mark.parametrize("overrides, words", [
    ({"liger_kernel": True}, "'liger_kernel' needs device cuda"),
    ({"attn_implementation": "flash_attention_2"}, "'attn_implementation' flash_attention_2 needs a CUDA GPU"),
    ({"attn_implementation": "flash"}, "must be one of auto, flash_attention_2, sdpa, eager"),
])
def test_the_speed_levers_are_recipe_fields_checked_when_the_recipe_is_built(overrides, words):
    with pytest.raises(RecipeError, match=words):
        load_recipe("tiny-verbosity", overrides)
    recipe = load_recipe("qwen3-14b-verbosity", {"liger_kernel": True, "attn_implementation": "flash_attention_2"})
    assert recipe.liger_kernel and recipe.attn_implementation == "flash_attention_2"
    assert load_recipe("qwen3-14b-verbosity").attn_implementation == "auto"
