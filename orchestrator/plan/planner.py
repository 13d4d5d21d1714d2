"""The typed `Plan` of a job: peak memory by component, what fits the target GPU, time per step and per epoch.

    plan = make_plan(config_json_dict, recipe, gpu="A10G", gpus=1, tokens=TokenStats | None)
    ok, detail, fix = fits(plan, free_vram_bytes)

`fits` is pure: preflight calls it with the GPU's free memory (total minus what other processes hold).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from . import memory
from .gpus import GPU, find_gpu
from .memory import GiB, Breakdown
from .setup import Setup, setup_from_recipe
from .shape import ModelShape, shape_from_config
from .throughput import StepTime, step_time
from .tokens import TokenStats

MAX_SEARCH_BATCH = 1024
MAX_SEARCH_LENGTH = 131072
LENGTH_STEP = 64


@dataclass(frozen=True)
class Plan:
    shape: ModelShape
    setup: Setup
    gpu: GPU
    memory: Breakdown
    max_batch: int                    # largest per-device batch at `memory.seq` that fits the GPU (0: none)
    max_length: int                   # largest sequence length at the setup's batch that fits (0: none)
    tokens: TokenStats | None
    time: StepTime | None
    steps_per_epoch: int | None
    seconds_per_epoch: float | None
    epochs: float | None
    notes: tuple[str, ...] = ()

    @property
    def fits_gpu(self) -> bool:
        return self.memory.device_bytes <= self.gpu.memory_bytes

    def to_json(self) -> dict[str, Any]:
        return {"model": self.shape.to_json(), "setup": self.setup.to_json(), "gpu": self.gpu.to_json(),
                "memory": self.memory.to_json(), "fits_gpu": self.fits_gpu, "max_batch": self.max_batch,
                "max_length": self.max_length, "tokens": self.tokens.to_json() if self.tokens else None,
                "time": self.time.to_json() if self.time else None, "steps_per_epoch": self.steps_per_epoch,
                "seconds_per_epoch": None if self.seconds_per_epoch is None else round(self.seconds_per_epoch, 1),
                "epochs": self.epochs, "notes": list(self.notes)}


def device_bytes(shape: ModelShape, setup: Setup, batch: int, seq: int) -> int:
    return memory.breakdown(shape, setup, batch, seq).device_bytes


def largest(fits_at, start: int, limit: int, step: int = 1) -> int:
    """The largest multiple of `step` in [start, limit] where the monotone `fits_at(n)` holds; 0 if none."""
    if not fits_at(start):
        return 0
    low = high = start
    while True:
        upper = min(high * 2, limit)
        if upper == high:
            return high
        if not fits_at(upper):
            high = upper
            break
        low = high = upper
    while high - low > step:
        mid = max(low + step, (low + high) // 2 // step * step)
        low, high = (mid, high) if fits_at(mid) else (low, mid)
    return low


def max_batch(shape: ModelShape, setup: Setup, seq: int, budget: int) -> int:
    return largest(lambda b: device_bytes(shape, setup, b, seq) <= budget, 1, MAX_SEARCH_BATCH)


def max_length(shape: ModelShape, setup: Setup, batch: int, budget: int) -> int:
    return largest(lambda s: device_bytes(shape, setup, batch, s) <= budget, LENGTH_STEP, MAX_SEARCH_LENGTH,
                   LENGTH_STEP)


def worst_seq(setup: Setup, tokens: TokenStats | None) -> int:
    """The widest micro-batch: padded to the longest example that is kept (examples over max_length are dropped)."""
    if tokens is None or setup.packing:
        return setup.max_length
    return max(1, min(setup.max_length, tokens.longest))


def _schedule(setup: Setup, tokens: TokenStats, recipe) -> tuple[int, int, float | None]:
    """(examples kept, steps per epoch, epochs) as the Trainer counts them."""
    kept = tokens.count - round(tokens.count * tokens.fraction_over(setup.max_length))
    per_step = setup.batch * setup.accumulation * setup.gpus
    if setup.packing:   # steps of per_step packed sequences of max_length tokens each
        kept_tokens = tokens.total * kept / max(1, tokens.count)
        steps = max(1, math.ceil(kept_tokens / (per_step * setup.max_length)))
    else:
        steps = max(1, math.ceil(kept / per_step))
    epochs = None
    if recipe is not None:
        epochs = (recipe.max_steps / steps) if recipe.max_steps > 0 else recipe.num_train_epochs
    return kept, steps, epochs


def make_plan(config: dict, recipe=None, *, gpu: str | GPU = "A10G", gpus: int = 1, tokens: TokenStats | None = None,
              setup: Setup | None = None, gpu_memory_bytes: int | None = None) -> Plan:
    """The plan of training `recipe` (a resolved Recipe) on a model with this config.json, on `gpus` x `gpu`."""
    shape = shape_from_config(config)
    setup = setup or setup_from_recipe(recipe, gpus=gpus)
    target = gpu if isinstance(gpu, GPU) else find_gpu(gpu, gpu_memory_bytes)
    seq = worst_seq(setup, tokens)
    breakdown = memory.breakdown(shape, setup, setup.batch, seq)
    budget = target.memory_bytes
    notes = []
    timing = steps = epoch_s = epochs = None
    if tokens is not None:
        kept, steps, epochs = _schedule(setup, tokens, recipe)
        if kept < tokens.count:
            notes.append(f"~{tokens.count - kept} of {tokens.count} examples are longer than max_length="
                         f"{setup.max_length} and would be dropped")
        width = setup.max_length if setup.packing else tokens.expected_longest(setup.batch, setup.max_length)
        timing = step_time(shape, setup, target, setup.batch * width, width)
        epoch_s = steps * timing.seconds_per_step
    if setup.device != "cuda":
        notes.append("the recipe trains on CPU: GPU memory and time do not apply")
    return Plan(shape, setup, target, breakdown, max_batch(shape, setup, seq, budget),
                max_length(shape, setup, setup.batch, budget), tokens, timing, steps, epoch_s, epochs, tuple(notes))


def _gib(n: float) -> str:
    return f"{n / GiB:.1f} GiB"


def fits(plan: Plan, free_vram_bytes: int) -> tuple[bool, str, str | None]:
    """(ok, detail, fix): does the plan's peak (CUDA context included) fit in `free_vram_bytes`?
    `fix` names what to change -- batch, max_length, gradient checkpointing -- so that it would."""
    need = plan.memory.device_bytes
    top = sorted(plan.memory.at_peak(), key=lambda c: -c.bytes)[:4]
    parts = ", ".join(f"{c.name} {_gib(c.bytes)}" for c in top)
    detail = (f"needs ~{_gib(need)} at peak ({plan.memory.peak_phase}; batch {plan.memory.batch} x "
              f"{plan.memory.seq} tokens: {parts}), {_gib(free_vram_bytes)} free on the {plan.gpu.name}")
    if need <= free_vram_bytes:
        return True, detail, None
    return False, detail, _fix(plan, free_vram_bytes)


def _dropped(plan: Plan, length: int) -> str:
    if plan.tokens is None:
        return "longer examples are dropped"
    n = round(plan.tokens.count * plan.tokens.fraction_over(length))
    return f"drops ~{n} of {plan.tokens.count} examples" if n else "drops no example"


def _fix(plan: Plan, budget: int) -> str:
    """What to change, cheapest first: the batch (same effective batch), checkpointing, Liger, max_length."""
    shape, setup, seq = plan.shape, plan.setup, plan.memory.seq
    effective = setup.batch * setup.accumulation

    def smaller_batch(batch: int) -> str:
        steps = math.ceil(effective / batch)
        same = "same effective batch" if steps * batch == effective else f"effective batch {steps * batch}, " \
                                                                         f"was {effective}"
        return f"per_device_train_batch_size={batch} with gradient_accumulation_steps={steps} ({same})"

    options = []
    variants = [("", setup)]
    if not setup.gradient_checkpointing:
        variants.append(("gradient_checkpointing=true (~25-30% slower steps)",
                         setup.replace(gradient_checkpointing=True)))
    if setup.loss != "fused_linear":
        variants.append(("liger_kernel=true (fused linear cross-entropy: no logits peak)",
                         setup.replace(loss="fused_linear")))
    best = 0
    for change, variant in variants:
        batch = max_batch(shape, variant, seq, budget)
        if batch >= setup.batch and change:
            options.append(change)
        elif best < batch < setup.batch:
            options.append(f"{change} and {smaller_batch(batch)}" if change else smaller_batch(batch))
        best = max(best, batch)
    length = max_length(shape, setup, setup.batch, budget)
    if 0 < length < seq:
        options.append(f"max_length={length} ({_dropped(plan, length)})")
    if best == 0 and setup.batch > 1:
        length = max_length(shape, setup.replace(batch=1), 1, budget)
        if 0 < length < seq:
            options.append(f"{smaller_batch(1)} and max_length={length} ({_dropped(plan, length)})")
    if not options:
        return (f"even batch 1 x {LENGTH_STEP} tokens does not fit in {_gib(budget)}: free the GPU (other processes "
                "hold memory) or use a GPU with more memory")
    return "set one of these in the job's overrides: " + "; or ".join(options)
