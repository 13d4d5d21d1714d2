"""Seconds per optimizer step: arithmetic at an assumed MFU, plus streaming the 4-bit weights, per micro-batch.

Per micro-batch of T tokens (batch x padded length):

* arithmetic: a frozen base needs no weight gradients, so each linear costs 2 FLOPs per weight and token in the
  forward pass, 2 in backward (the input gradient) and 2 more when checkpointing recomputes the forward; lm_head
  2 + 2; LoRA forward + its input and weight gradients; attention 4 x S/2 x q_dim per token and layer (causal),
  3.5x that over forward + backward (+1x recomputed). Run at MFU = 0.40 of the datasheet's dense bf16 rate
  (an assumption: no seed measures a compute-bound run; the bench measures it on the GPU it has);
* weight traffic: every pass over a 4-bit layer dequantizes it to bf16 and the GEMM reads that back -- 0.5 B
  read + 2 B written + 2 B read per weight -- and there are 2 passes (3 with checkpointing). fp32 lm_head: cast
  to bf16 (4 B read, 2 written) and read twice; peft's merged embedding copy, ~5 x its bytes. At a fraction
  ETA of the datasheet bandwidth, calibrated below;
* dispatch: eager PyTorch + peft + bitsandbytes issue ~100 kernels per block and pass; when the GPU finishes
  them faster than Python issues them (short micro-batches on an H100/H200), a pass over a block takes at
  least CPU_PER_LAYER_PASS seconds.

Calibration against seed 000 (Qwen3-14B, A10G, 9.1 s/step = 400 steps in 60 min 41 s, 16 sequences a step). Its
sequences were short: its log counts 21 prompt + 2 answer tokens for a TERSE example; a VERBOSE answer of the
example pairs in the user's format (training_data/verbosity_pairs_example.jsonl, ~415 characters) is ~100
tokens; half of each gives ~72 tokens a sequence, ~1,150 tokens a step. (The calibration moves ~10% between 50
and 100 tokens a sequence: the step is dominated by the weights, not the tokens.)
16 full 1,024-token sequences in 9.1 s would need ~150 dense bf16 TFLOPS, more than an A10G's 125 peak: seed 000
was not that. At ~72 tokens a micro-batch its arithmetic is ~0.12 s of the 0.57 s per micro-batch; the rest is
streaming 13.2B 4-bit weights three times. That fixes ETA (~0.67), not MFU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import states
from .gpus import GPU, find_gpu
from .setup import Setup
from .shape import ModelShape

MFU = 0.40
CPU_PER_LAYER_PASS = 0.8e-3        # seconds: ~100 eager kernel launches at ~8 us each
DEQUANT_BYTES_PER_WEIGHT = 4.5
INTERCONNECT_GBS = {"A10G": 16.0, "L4": 16.0}   # PCIe 4.0 x16, effective; NVLink parts: 300 (A100), 450 (H1x0)
SEED_000 = {"gpu": "A10G", "seconds_per_step": (60 * 60 + 41) / 400, "sequences_per_step": 16,
            "tokens_per_sequence": 72}


@dataclass(frozen=True)
class StepTime:
    seconds_per_step: float
    seconds_per_micro_batch: float
    tokens_per_step: float
    compute_s: float
    weights_s: float
    dispatch_bound: bool
    allreduce_s: float
    assumption: str

    @property
    def tokens_per_second(self) -> float:
        return self.tokens_per_step / self.seconds_per_step

    def to_json(self) -> dict[str, Any]:
        return {"seconds_per_step": round(self.seconds_per_step, 3),
                "seconds_per_micro_batch": round(self.seconds_per_micro_batch, 4),
                "tokens_per_step": round(self.tokens_per_step, 1),
                "tokens_per_second": round(self.tokens_per_second, 1),
                "compute_seconds_per_micro_batch": round(self.compute_s, 4),
                "weight_streaming_seconds_per_micro_batch": round(self.weights_s, 4),
                "dispatch_bound": self.dispatch_bound, "allreduce_seconds": round(self.allreduce_s, 4),
                "assumption": self.assumption}


def flops_per_micro_batch(shape: ModelShape, setup: Setup, tokens: float, seq: float) -> float:
    ckpt = 1 if setup.gradient_checkpointing else 0
    lora = sum(setup.lora_r * (lin.in_features + lin.out_features)
               for lin in states.lora_targets(shape, setup)) * shape.layers
    per_token = (2 + ckpt) * 2 * shape.quantized_params + 4 * shape.vocab * shape.hidden
    per_token += 2 * lora * (1 + ckpt) + 4 * lora
    per_token += (3.5 + ckpt) * 4 * (seq / 2) * shape.q_dim * shape.layers
    return per_token * tokens


def weight_bytes_per_micro_batch(shape: ModelShape, setup: Setup) -> float:
    passes = 3 if setup.gradient_checkpointing else 2
    total = passes * DEQUANT_BYTES_PER_WEIGHT * shape.quantized_params
    head = shape.vocab * shape.hidden
    total += head * (10 if setup.float_weight_bytes == 4 and setup.compute_bytes == 2 else 2 * setup.compute_bytes)
    if setup.trainable_token_rows:
        total += 5 * shape.embedding_params * setup.float_weight_bytes
    return total


def _parts(shape: ModelShape, setup: Setup, gpu: GPU, tokens: float, seq: float, eta: float):
    compute = flops_per_micro_batch(shape, setup, tokens, seq) / (gpu.bf16_tflops * 1e12 * MFU)
    weights = weight_bytes_per_micro_batch(shape, setup) / (gpu.bandwidth_gbs * 1e9 * eta)
    passes = 3 if setup.gradient_checkpointing else 2
    floor = passes * shape.layers * CPU_PER_LAYER_PASS
    return compute, weights, floor


def calibrated_eta(shape: ModelShape | None = None) -> float:
    """The bandwidth efficiency that makes the model reproduce seed 000's 9.1 s/step (see the module doc)."""
    from .shape import shape_from_config

    shape = shape or shape_from_config(QWEN3_14B)
    setup = Setup(upcast_non_quantized=False, trainable_token_rows=0)   # seed 000: bf16, StyleDeltaEmbedding
    gpu = find_gpu(SEED_000["gpu"])
    micro = SEED_000["seconds_per_step"] / SEED_000["sequences_per_step"]
    tokens = SEED_000["tokens_per_sequence"]
    compute = flops_per_micro_batch(shape, setup, tokens, tokens) / (gpu.bf16_tflops * 1e12 * MFU)
    return weight_bytes_per_micro_batch(shape, setup) / ((micro - compute) * gpu.bandwidth_gbs * 1e9)


def step_time(shape: ModelShape, setup: Setup, gpu: GPU, tokens_per_micro: float, seq: float) -> StepTime:
    eta = calibrated_eta()
    compute, weights, floor = _parts(shape, setup, gpu, tokens_per_micro, seq, eta)
    micro = max(compute + weights, floor)
    optimizer = 28 * states.trainable_params(shape, setup) / (gpu.bandwidth_gbs * 1e9 * eta)
    allreduce = 0.0
    if setup.gpus > 1:
        link = INTERCONNECT_GBS.get(gpu.name, 300.0 if gpu.name.startswith("A100") else 450.0)
        allreduce = 2 * states.gradient_bytes(shape, setup) * (setup.gpus - 1) / setup.gpus / (link * 1e9)
    per_step = setup.accumulation * micro + optimizer + allreduce
    note = (f"MFU {MFU:.2f} of {gpu.bf16_tflops:g} dense bf16 TFLOPS; 4-bit weights streamed at {eta:.2f} of "
            f"{gpu.bandwidth_gbs:g} GB/s (calibrated on seed 000); at least {CPU_PER_LAYER_PASS * 1e3:g} ms of "
            "Python dispatch per block and pass")
    if setup.gpus > 1:
        note += f"; {setup.gpus} data-parallel GPUs, LoRA gradients all-reduced each step"
    return StepTime(per_step, micro, tokens_per_micro * setup.accumulation * setup.gpus, compute, weights,
                    floor > compute + weights, allreduce, note)


QWEN3_14B = {"model_type": "qwen3", "hidden_size": 5120, "intermediate_size": 17408, "num_hidden_layers": 40,
             "num_attention_heads": 40, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936,
             "tie_word_embeddings": False}   # Qwen/Qwen3-14B config.json, the model seed 000 trained
