"""Memory that lives for the whole run: 4-bit weights, floating-point weights, LoRA, gradients, optimizer states.

Byte counts follow the tensors bitsandbytes 0.50, peft 0.21 and torch 2.13 actually create (checked against a
model loaded by the payload on CPU: tests/test_plan_tiny_model.py):

* a 4-bit weight stores two codes per byte. Its quantization constants: one absmax per block of 64 weights,
  fp32 without double quantization; with it (`bnb_4bit_use_double_quant`) an 8-bit absmax per block plus one fp32
  absmax per 256 blocks, a 256-entry fp32 code book and an offset; every layer also keeps its 16-entry nf4/fp4
  code book;
* LoRA A/B matrices are fp32: peft leaves adapters of a 4-bit layer in fp32 (its weight is uint8), and
  `autocast_adapter_dtype` upcasts bf16 adapters anyway. The trained style rows (trainable_token_indices) are an
  fp32 delta plus a copy of the original rows;
* gradients have the dtype of their parameters (fp32).
"""

from __future__ import annotations

from .setup import Setup
from .shape import Linear, ModelShape

BLOCK = 64                # Params4bit's block size; transformers' BitsAndBytesConfig passes no other
NESTED_BLOCK = 256        # double quantization: blocks of absmax values
BNB_8BIT_BLOCK = 256      # 8-bit optimizers: one fp32 absmax per 256 state values
BNB_MIN_8BIT_SIZE = 4096  # bitsandbytes keeps 32-bit state for tensors smaller than this


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def quantized_bytes(shape: ModelShape, setup: Setup) -> dict[str, int]:
    """{"4-bit codes": ..., "quantization constants": ...} over every block linear."""
    codes = constants = 0
    for lin in shape.linears():
        n = lin.params
        blocks = _ceil(n, BLOCK)
        codes += _ceil(n, 2)
        if setup.double_quant:
            constants += blocks + 4 * _ceil(blocks, NESTED_BLOCK) + 4 * 256 + 4 + 4 * 16
        else:
            constants += 4 * blocks + 4 * 16
    return {"4-bit codes": codes * shape.layers, "quantization constants": constants * shape.layers}


def float_weight_bytes(shape: ModelShape, setup: Setup) -> dict[str, int]:
    width = setup.float_weight_bytes
    parts = {"input embedding": shape.embedding_params * width}
    if shape.head_params:
        parts["lm_head"] = shape.head_params * width
    parts["norms and biases"] = shape.small_params * width
    return parts


def lora_targets(shape: ModelShape, setup: Setup) -> tuple[Linear, ...]:
    """The block linears LoRA wraps: "all-linear" is all seven (peft leaves lm_head out), else by name."""
    linears = shape.linears()
    if setup.lora_targets == ("all-linear",):
        return linears
    names = {lin.name for lin in linears}
    unknown = [t for t in setup.lora_targets if t not in names]
    if unknown:
        from ..errors import InputError

        raise InputError(f"plan: LoRA target {unknown[0]!r} is not a linear layer of a {shape.model_type} block",
                         hint=f"targets: all-linear or any of {', '.join(sorted(names))}")
    return tuple(lin for lin in linears if lin.name in setup.lora_targets)


def trainable_tensors(shape: ModelShape, setup: Setup) -> list[int]:
    """Element counts of every trainable tensor: LoRA A (r x in) and B (out x r) per target, the style rows."""
    sizes = []
    for lin in lora_targets(shape, setup):
        sizes += [setup.lora_r * lin.in_features, lin.out_features * setup.lora_r]
    sizes = sizes * shape.layers
    if setup.trainable_token_rows:
        sizes.append(setup.trainable_token_rows * shape.hidden)
    return sizes


def trainable_params(shape: ModelShape, setup: Setup) -> int:
    return sum(trainable_tensors(shape, setup))


def adapter_bytes(shape: ModelShape, setup: Setup) -> dict[str, int]:
    lora = sum(trainable_tensors(shape, setup)) - setup.trainable_token_rows * shape.hidden
    parts = {"LoRA A/B (fp32)": 4 * lora}
    if setup.trainable_token_rows:
        rows = setup.trainable_token_rows * shape.hidden
        parts["style rows: fp32 delta + original rows"] = 4 * rows + setup.float_weight_bytes * rows
    return parts


def gradient_bytes(shape: ModelShape, setup: Setup) -> int:
    return 4 * trainable_params(shape, setup)


def optimizer_bytes(shape: ModelShape, setup: Setup) -> dict[str, int]:
    """Optimizer state after the first step, by optimizer."""
    tensors = trainable_tensors(shape, setup)
    if setup.optim in ("adamw_torch", "adamw_torch_fused", "paged_adamw_32bit"):
        parts = {"exp_avg + exp_avg_sq (fp32)": 8 * sum(tensors)}
        if setup.optim != "paged_adamw_32bit":
            parts["step counters"] = 4 * len(tensors)
        return parts
    small = sum(n for n in tensors if n < BNB_MIN_8BIT_SIZE)
    big = sum(n for n in tensors if n >= BNB_MIN_8BIT_SIZE)
    return {"two 8-bit moments": 2 * big,
            "their fp32 block absmax": 2 * 4 * sum(_ceil(n, BNB_8BIT_BLOCK) for n in tensors if n >= BNB_MIN_8BIT_SIZE),
            "fp32 state of tensors < 4096 elements": 8 * small}


def optimizer_step_temporaries(shape: ModelShape, setup: Setup) -> int:
    """torch's foreach AdamW builds one parameter-sized list (the denominators); fused and bnb kernels none."""
    return 4 * trainable_params(shape, setup) if setup.optim == "adamw_torch" else 0


OPTIMIZER_NOTES = {
    "adamw_torch": "torch AdamW (foreach): two fp32 moments per trainable weight (the step counters are tiny)",
    "adamw_torch_fused": "torch AdamW (fused): two fp32 moments per trainable weight, no step temporaries",
    "paged_adamw_32bit": "bitsandbytes paged AdamW: two fp32 moments in CUDA managed memory, which can page to "
                         "host RAM under pressure (torch's max_memory_allocated does not count it)",
    "paged_adamw_8bit": "bitsandbytes paged AdamW 8-bit: two 1-byte moments + an fp32 absmax per 256, in managed "
                        "memory (pages to host RAM under pressure; not in torch's max_memory_allocated)",
    "adamw_bnb_8bit": "bitsandbytes AdamW 8-bit: two 1-byte moments + an fp32 absmax per 256 values",
}
