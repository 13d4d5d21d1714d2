"""Bench: real QLoRA training steps of a real architecture on the GPU, next to the planner and seed 000's figures.

Builds Qwen3-14B / Qwen3-8B / Mistral-7B (bench/model_configs/, random weights quantized to nf4 while they are
built: bench/random_model.py), attaches LoRA and the two style rows with the payload's own `attach_lora`, and
trains N optimizer steps through the payload's own `training_arguments` + `make_trainer` (HF Trainer, the
recipe's optimizer, bf16 autocast, activation checkpointing) on random token sequences of `--seq` tokens. Prints
per variant: tokens/s, seconds per step, peak allocated/reserved memory, the planner's prediction for the same
setup and the ratio measured/predicted, the speed-up over the golden recipe, and seed 000's figures (Qwen3-14B on
an A10G: 9.1 s/step for 16 sequences of ~72 tokens, 9.7 GiB allocated / 11.3 GiB reserved).

Variants (speed levers, each a recipe field, measured here before any becomes a default):
  golden   the recipe as shipped (seed 000's settings: batch 1 x 16, sdpa, adamw_torch)
  batch4   per_device_train_batch_size 4 x gradient_accumulation_steps 4: the same 16 sequences a step
  paged8   optim paged_adamw_8bit
  flash    attn_implementation flash_attention_2 (needs the flash-attn package)
  liger    liger_kernel: Liger's kernels, fused linear cross-entropy (needs liger-kernel and CUDA)
  packing  issue 11's sequence packing (the recipe's `packing` field): several sequences per max_length row
  best     batch4 + paged8 + liger (+ flash where available)
A lever that cannot run here is reported "not available here", never imitated.

    python bench/gpu_train.py --config tiny                      # CPU, seconds (tests/test_gpu_bench.py runs it)
    python bench/gpu_train.py --config qwen3-14b --variants golden,batch4,paged8,liger,flash,best --seq 1024

On the lent H200 (no network; bitsandbytes and liger-kernel are not in its image, so they travel as wheels):
once here, `echo /.whl/ >> .git/info/exclude && sh bench/fetch_gpu_wheels.sh`, then one device `run` with
carry [".whl"], timeout_s 600 and the command in bench/README.md ("GPU training bench").
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

CONFIGS = {"qwen3-14b": ("qwen3-14b.json", "qwen3-14b-verbosity"), "qwen3-8b": ("qwen3-8b.json", "qwen3-14b-verbosity"),
           "mistral-7b": ("mistral-7b-v0.3.json", "mistral-7b-verbosity"), "tiny": (None, "tiny-verbosity")}
TINY = {"model_type": "qwen3", "vocab_size": 1088, "hidden_size": 64, "intermediate_size": 192, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "tie_word_embeddings": False,
        "max_position_embeddings": 1024, "initializer_range": 0.06}      # remote_payload.tiny_model's shape
VARIANTS = {"golden": {}, "batch4": {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 4},
            "paged8": {"optim": "paged_adamw_8bit"}, "flash": {"attn_implementation": "flash_attention_2"},
            "liger": {"liger_kernel": True}, "packing": {"packing": True},
            "best": {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 4, "optim": "paged_adamw_8bit",
                     "liger_kernel": True, "attn_implementation": "flash_attention_2"}}
SEED_000 = {"gpu": "NVIDIA A10G", "seconds_per_step": 9.1, "sequences_per_step": 16, "tokens_per_sequence": 72,
            "allocated_gib": 9.7, "reserved_gib": 11.3}
GiB = 1024 ** 3


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="tiny")
    parser.add_argument("--device", choices=("cuda", "cpu"), help="default: cpu for tiny, cuda otherwise")
    parser.add_argument("--variants", default="golden", help=f"comma-separated: {', '.join(VARIANTS)}")
    parser.add_argument("--steps", type=int, default=3, help="timed optimizer steps per variant (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    parser.add_argument("--seq", type=int, help="tokens per sequence (default: 1024; tiny: 64)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    return parser.parse_args(argv)


def lever_unavailable(field: str, value, device: str) -> str | None:
    """Why one lever (a recipe field and value) cannot run on this machine; None when it can."""
    import importlib.util

    import torch

    if field == "liger_kernel" and value:
        if device != "cuda":
            return "Liger's kernels are Triton kernels for NVIDIA GPUs: no GPU here"
        if importlib.util.find_spec("liger_kernel") is None:
            return "the liger-kernel package is not installed (bench/README.md: carry its wheel)"
    if field == "attn_implementation" and value == "flash_attention_2":
        if device != "cuda":
            return "flash-attention runs on NVIDIA GPUs only: no GPU here"
        if importlib.util.find_spec("flash_attn") is None:
            return "the flash-attn package is not installed"
        if torch.cuda.get_device_capability()[0] < 8:
            return "flash-attention needs an Ampere-or-newer GPU"
    if field == "optim" and str(value).startswith("paged_") and device != "cuda":
        return "paged optimizers live in CUDA managed memory: no GPU here"
    return None


def resolve_variant(name: str, recipe_name: str, device: str, base: dict):
    """(recipe, None), or (None, why the variant cannot run here). "best" keeps the levers that can run."""
    from remote_payload.errors import RecipeError
    from remote_payload.recipes import load_recipe

    overrides = dict(VARIANTS[name])
    for field, value in list(overrides.items()):
        why = lever_unavailable(field, value, device)
        if why and name == "best":
            overrides.pop(field)
        elif why:
            return None, why
    try:
        return load_recipe(recipe_name, {**base, **overrides}), None
    except RecipeError as exc:
        return None, f"not a valid recipe here: {exc.message}"


def synthetic_features(vocab: int, seq: int, count: int, seed: int = 0):
    """`count` random sequences of `seq` tokens, the first quarter (at most 32) masked like a prompt."""
    import random

    from remote_payload.features import IGNORE_INDEX, Feature, FeatureSet

    rng = random.Random(seed)
    masked = min(32, seq // 4)
    features = []
    for i in range(count):
        ids = [rng.randrange(vocab - 2) for _ in range(seq)]
        features.append(Feature(f"synthetic:{i}", "VERBOSE" if i % 2 else "TERSE", ids,
                                [IGNORE_INDEX] * masked + ids[masked:], masked, seq - masked))
    return FeatureSet(features, max_length=seq)


class _StepTimer:
    """Seconds of each optimizer step (the device synchronised at both ends)."""

    def __init__(self, sync):
        from transformers import TrainerCallback

        timer = self

        class Callback(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                sync()
                timer.started = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                sync()
                timer.seconds.append(time.perf_counter() - timer.started)

        self.seconds: list[float] = []
        self.started = 0.0
        self.callback = Callback()


def _device_gpu(device: str):
    """The planner's GPU entry for this device (None on CPU)."""
    import torch

    from orchestrator.errors import OrchError
    from orchestrator.plan import GPU, find_gpu

    if device != "cuda":
        return None
    props = torch.cuda.get_device_properties(0)
    try:
        return find_gpu(props.name, props.total_memory)
    except OrchError:
        return GPU(props.name, props.total_memory, 989.0, 3350.0, "not in the planner's table: H100's rates assumed")


def predict(config: dict, recipe, device: str, seq: int) -> dict:
    """The planner's figures for exactly this run."""
    from orchestrator.plan import find_gpu, make_plan
    from orchestrator.plan.tokens import _from_lengths

    gpu = _device_gpu(device) or find_gpu("A10G")
    tokens = _from_lengths([seq] * 64, "bench", f"{seq} tokens a sequence")
    plan = make_plan(config, recipe, gpu=gpu, tokens=tokens)
    doc = {"peak_allocated_gib": plan.memory.peak_allocated / GiB, "peak_reserved_gib": plan.memory.peak_reserved / GiB,
           "peak_phase": plan.memory.peak_phase}
    if device == "cuda":
        doc["seconds_per_step"] = plan.time.seconds_per_step
    return doc


def measure(config: dict, recipe, device: str, seq: int, steps: int, warmup: int) -> dict:
    """Build, attach LoRA, train warmup + steps optimizer steps through the payload's Trainer; what it took."""
    import torch

    from random_model import build_model
    from remote_payload.modeling import attach_lora
    from remote_payload.styles import StyleTokens
    from remote_payload.features import Collator, FeatureDataset
    from remote_payload.packing import PackedCollator, PackedDataset
    from remote_payload.preprocess import PreparedData
    from remote_payload.tiny_model import build_tokenizer
    from remote_payload.trainer import make_trainer, training_arguments

    cuda = device == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    started = time.perf_counter()
    rows = config["vocab_size"]
    model = attach_lora(build_model(config, recipe, device), recipe,
                        StyleTokens(rows - 2, rows - 1, rows, rows, added_to_tokenizer=True))
    build_s = time.perf_counter() - started
    per_step = recipe.per_device_train_batch_size * recipe.gradient_accumulation_steps
    features = synthetic_features(rows, seq, per_step * (steps + warmup))
    timer = _StepTimer(sync)
    tokenizer = build_tokenizer()
    data = PreparedData(tokenizer, None, features, FeatureDataset(features.features), Collator(tokenizer.pad_token_id))
    if recipe.packing:
        data.train_dataset = PackedDataset(features.features, recipe.max_length)
        data.packing, data.collator = data.train_dataset.summary(), PackedCollator(tokenizer.pad_token_id)
    with tempfile.TemporaryDirectory(prefix="orch-gpu-bench-") as run_dir:
        trainer = make_trainer(model, tokenizer, training_arguments(recipe, Path(run_dir), 1.0, evaluates=False),
                               data, Path(run_dir), recipe, per_step * data.examples_per_item)
        trainer.add_callback(timer.callback)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        trainer.train()
    timed = timer.seconds[warmup:] or timer.seconds
    seconds = statistics.median(timed)
    result = {"seconds_per_step": seconds, "tokens_per_second": per_step * seq / seconds, "build_seconds": build_s,
              "step_seconds": [round(t, 3) for t in timer.seconds],
              "loss": trainer.state.log_history[-1].get("train_loss")}
    if cuda:
        result.update(peak_allocated_gib=torch.cuda.max_memory_allocated() / GiB,
                      peak_reserved_gib=torch.cuda.max_memory_reserved() / GiB, gpu=torch.cuda.get_device_name())
    del trainer, model
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return result


def model_config(name: str) -> dict:
    if CONFIGS[name][0] is None:
        return dict(TINY)
    return json.loads((ROOT / "bench" / "model_configs" / CONFIGS[name][0]).read_text())


def check_device(args) -> str:
    """The device to run on; a clear refusal when CUDA is asked for and there is none."""
    import torch

    device = args.device or ("cpu" if args.config == "tiny" else "cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"bench: --config {args.config} runs on a CUDA GPU, and torch {torch.__version__} sees none "
                         "here (torch.cuda.is_available() is False). Run `--config tiny` on this machine, or the "
                         "device command in bench/README.md on a machine with a GPU.")
    if device == "cpu" and args.config != "tiny":
        raise SystemExit(f"bench: --config {args.config} on CPU would take hours a step; use --config tiny")
    return device


def run(args) -> dict:
    device = check_device(args)
    seq = args.seq or (64 if args.config == "tiny" else 1024)
    config = model_config(args.config)
    recipe_name = CONFIGS[args.config][1]
    base = {"max_steps": args.warmup + args.steps, "save_steps": 10 ** 6, "logging_steps": 1,
            "eval_after_train": False, "max_length": max(seq, 64), "device": device}
    if device == "cuda" and args.config == "tiny":
        base.update(compute_dtype="bfloat16", bf16=True)
    results = []
    for name in [v.strip() for v in args.variants.split(",") if v.strip()]:
        if name not in VARIANTS:
            raise SystemExit(f"bench: unknown variant {name!r}; known: {', '.join(VARIANTS)}")
        recipe, why = resolve_variant(name, recipe_name, device, base)
        if recipe is None:
            results.append({"variant": name, "available": False, "why": why})
            print(f"{name}: not available here: {why}", flush=True)
            continue
        print(f"{name}: building {args.config} on {device}, training {args.warmup}+{args.steps} steps", flush=True)
        measured = measure(config, recipe, device, seq, args.steps, args.warmup)
        results.append({"variant": name, "available": True, "recipe_overrides": VARIANTS[name],
                        "batch": recipe.per_device_train_batch_size, "accumulation": recipe.gradient_accumulation_steps,
                        "measured": measured, "predicted": predict(config, recipe, device, seq)})
    return {"config": args.config, "device": device, "seq": seq, "steps": args.steps, "warmup": args.warmup,
            "seed_000": SEED_000, "results": results, **_versions()}


def _versions() -> dict:
    from importlib import metadata

    names = ("torch", "transformers", "peft", "bitsandbytes", "accelerate", "liger-kernel", "flash-attn")
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return {"versions": found}


def report(doc: dict) -> str:
    lines = [f"{doc['config']} on {doc['device']}, {doc['seq']} tokens a sequence, median of {doc['steps']} steps"
             f" after {doc['warmup']} warm-up"]
    golden = next((r for r in doc["results"] if r["variant"] == "golden" and r["available"]), None)
    head = f"{'variant':<8} {'tok/s':>9} {'s/step':>8} {'alloc GiB':>10} {'resv GiB':>9} {'plan GiB':>9} " \
           f"{'meas/plan':>9} {'plan s':>8} {'meas/plan':>9} {'speed-up':>8}"
    lines.append(head)
    for r in doc["results"]:
        if not r["available"]:
            lines.append(f"{r['variant']:<8} not available here: {r['why']}")
            continue
        m, p = r["measured"], r["predicted"]
        alloc = m.get("peak_allocated_gib")
        cells = [f"{r['variant']:<8}", f"{m['tokens_per_second']:>9.0f}", f"{m['seconds_per_step']:>8.3f}",
                 f"{alloc:>10.2f}" if alloc else f"{'-':>10}",
                 f"{m['peak_reserved_gib']:>9.2f}" if alloc else f"{'-':>9}", f"{p['peak_allocated_gib']:>9.2f}",
                 f"{alloc / p['peak_allocated_gib']:>9.2f}" if alloc else f"{'-':>9}",
                 f"{p['seconds_per_step']:>8.2f}" if "seconds_per_step" in p else f"{'-':>8}",
                 f"{m['seconds_per_step'] / p['seconds_per_step']:>9.2f}" if "seconds_per_step" in p else f"{'-':>9}",
                 f"{m['tokens_per_second'] / golden['measured']['tokens_per_second']:>7.2f}x" if golden
                 else f"{'-':>8}"]
        lines.append(" ".join(cells))
    if doc["device"] == "cuda":
        gpu = next((r["measured"]["gpu"] for r in doc["results"] if r["available"]), "?")
        lines.append(f"GPU: {gpu}")
    else:
        lines.append("CPU: peak GPU memory does not apply (planned figures use CPU semantics); s/step is not a GPU's")
    s = doc["seed_000"]
    lines.append(f"seed 000 (Qwen3-14B, {s['gpu']}, {s['sequences_per_step']} x ~{s['tokens_per_sequence']} tokens): "
                 f"{s['seconds_per_step']} s/step, {s['allocated_gib']} GiB allocated / {s['reserved_gib']} GiB "
                 "reserved")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    doc = run(args)
    print(report(doc), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
