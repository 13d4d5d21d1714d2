"""Peak GPU memory of one training step, component by component, each with the assumption it makes.

Not everything is alive at once, so the peak is the largest of five moments of a micro-batch (after the first
optimizer step, with gradients accumulating from earlier micro-batches):

  embedding forward   weights + states + gradients + peft's merged embedding copy
  loss                ... + saved activations + bf16 weight copies + the logits at the loss
  layer backward      ... + saved activations + (checkpointing) one layer recomputed + gradients in flight
  embedding backward  ... + the dense gradient of the merged embedding
  optimizer step      ... + the optimizer's temporaries

`peak_allocated` is what `torch.cuda.max_memory_allocated()` reports; `peak_reserved` adds the caching
allocator's rounding and fragmentation; `device_bytes` adds the CUDA context, which nvidia-smi counts and torch
does not. That last figure is what must fit in the GPU's free memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import activations as act
from . import states
from .setup import Setup
from .shape import ModelShape

GiB = 1024 ** 3
ALLOCATOR_SLACK = 0.10        # reserved / allocated - 1: seed 000 logged 11.3 GiB reserved at ~10.4 GiB peak
CUDA_CONTEXT = GiB // 2       # CUDA context + cuBLAS/cuDNN handles, outside torch's allocator (seed 003: ~0.5)


@dataclass(frozen=True)
class Component:
    name: str
    bytes: int
    assumption: str
    parts: dict[str, int] = field(default_factory=dict)
    phases: tuple[str, ...] = ()          # the moments it is alive at; () = always

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "bytes": self.bytes, "gib": round(self.bytes / GiB, 3),
                "assumption": self.assumption, "parts": self.parts, "phases": list(self.phases) or "always"}


@dataclass(frozen=True)
class Breakdown:
    components: tuple[Component, ...]
    phases: dict[str, int]                # moment -> bytes allocated then
    batch: int
    seq: int

    @property
    def peak_phase(self) -> str:
        return max(self.phases, key=self.phases.get)

    @property
    def peak_allocated(self) -> int:
        return self.phases[self.peak_phase]

    @property
    def peak_reserved(self) -> int:
        return int(self.peak_allocated * (1 + ALLOCATOR_SLACK))

    @property
    def device_bytes(self) -> int:
        return self.peak_reserved + CUDA_CONTEXT

    def component(self, name: str) -> Component:
        return next(c for c in self.components if c.name == name)

    def at_peak(self) -> list[Component]:
        peak = self.peak_phase
        return [c for c in self.components if not c.phases or peak in c.phases]

    def to_json(self) -> dict[str, Any]:
        return {"batch": self.batch, "seq": self.seq, "components": [c.to_json() for c in self.components],
                "phases": self.phases, "peak_phase": self.peak_phase, "peak_allocated_bytes": self.peak_allocated,
                "peak_reserved_bytes": self.peak_reserved, "device_bytes": self.device_bytes,
                "allocator_slack": ALLOCATOR_SLACK, "cuda_context_bytes": CUDA_CONTEXT}


PHASES = ("embedding forward", "loss", "layer backward", "embedding backward", "optimizer step")


def _static(shape: ModelShape, setup: Setup) -> list[Component]:
    q = states.quantized_bytes(shape, setup)
    dq = "double-quantized (8-bit absmax per 64 + fp32 per 256 blocks)" if setup.double_quant else \
        "fp32 absmax per 64 weights"
    fw = "fp32: peft's prepare_model_for_kbit_training upcasts them" if setup.upcast_non_quantized else \
        f"{setup.compute_dtype}, as loaded (no prepare_model_for_kbit_training)"
    opt = states.optimizer_bytes(shape, setup)
    trainable = states.trainable_params(shape, setup)
    return [
        Component("quantized weights", sum(q.values()), f"every block linear in 4 bits (2 per byte), constants "
                  f"{dq}; embeddings and lm_head are never quantized", q),
        Component("embeddings, lm_head, norms", sum(states.float_weight_bytes(shape, setup).values()),
                  f"not quantized; {fw}", states.float_weight_bytes(shape, setup)),
        Component("LoRA + style rows", sum(states.adapter_bytes(shape, setup).values()),
                  f"{trainable:,} trainable parameters, fp32: r={setup.lora_r} on "
                  f"{', '.join(lin.name for lin in states.lora_targets(shape, setup))}, "
                  f"{setup.trainable_token_rows} trainable embedding rows", states.adapter_bytes(shape, setup)),
        Component("gradients", states.gradient_bytes(shape, setup),
                  "fp32, one per trainable parameter, kept while gradients accumulate"),
        Component("optimizer states", sum(opt.values()), states.OPTIMIZER_NOTES[setup.optim], opt),
    ]


def _transient(shape: ModelShape, setup: Setup, batch: int, seq: int) -> list[Component]:
    lora = states.trainable_params(shape, setup) - setup.trainable_token_rows * shape.hidden
    stored = act.stored_activations(shape, setup, batch, seq)
    backward = act.layer_backward_bytes(shape, setup, batch, seq)
    logits, moment = act.logits_bytes(shape, setup, batch, seq)
    copies = act.autocast_copies(shape, setup, lora)
    emb = act.embedding_copies(shape, setup)
    ckpt = ("with gradient checkpointing: each layer's input hidden states "
            f"({setup.residual_bytes} B per value)" if setup.gradient_checkpointing else
            "no gradient checkpointing: every tensor each layer saves for backward")
    loss = {"shift_labels": "transformers 5 loss: logits upcast to fp32, labels shifted (no shifted logits copy)",
            "shift_logits": "older loss (seed 003's SFTTrainer): fp32 logits plus a shifted contiguous copy",
            "fused_linear": "Liger fused linear cross-entropy: logits computed in chunks, never whole"}[setup.loss]
    temps = states.optimizer_step_temporaries(shape, setup)
    comps = [
        Component("activations", sum(stored.values()), f"{ckpt}; {batch} x {seq} tokens", stored,
                  ("loss", "layer backward")),
        Component("layer backward", sum(backward.values()), "backward through one block: "
                  + ("its saved tensors, recomputed, " if setup.gradient_checkpointing else "")
                  + "and the gradients flowing through it", backward, ("layer backward",)),
        Component("logits peak", sum(logits.values()), f"{loss}; largest {moment}; vocabulary {shape.vocab:,}",
                  logits, ("loss",)),
    ]
    for name, size in copies.items():
        comps.append(Component(name, size, "an autocast cast of fp32 weights, kept for backward", {},
                               ("loss",) if "lm_head" in name else ("loss", "layer backward")))
    if emb:
        comps.append(Component("embedding copy", sum(emb.values()), "peft's trainable_token_indices merges the "
                               "style rows into a full copy of the embedding each forward, and backward makes a dense "
                               "gradient of that copy", emb, ("embedding forward", "embedding backward")))
    if temps:
        comps.append(Component("optimizer temporaries", temps, "foreach AdamW's parameter-sized list of "
                               "denominators during step()", {}, ("optimizer step",)))
    return comps


def breakdown(shape: ModelShape, setup: Setup, batch: int | None = None, seq: int | None = None) -> Breakdown:
    """Every component at `batch` x `seq` (default: the setup's batch and max_length)."""
    batch = batch or setup.batch
    seq = seq or setup.max_length
    comps = tuple(_static(shape, setup) + _transient(shape, setup, batch, seq))
    phases = {phase: sum(c.bytes for c in comps if not c.phases or phase in c.phases) for phase in PHASES}
    return Breakdown(comps, phases, batch, seq)
