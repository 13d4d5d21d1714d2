"""What a training run does that memory and time depend on: the recipe's numbers, plus how the payload runs it.

`setup_from_recipe(recipe)` reads a resolved `remote_payload.recipes.Recipe`. The fields that are not in the
recipe describe the code path, and default to what the payload does with its pinned libraries:

* `upcast_non_quantized`: peft's `prepare_model_for_kbit_training` (remote_payload/modeling.py `attach_lora`)
  turns every bf16 weight that is not 4-bit (embeddings, lm_head, norms) into fp32. The embedding output is then
  fp32, so is the residual stream, and bitsandbytes' Linear4bit returns its output in its input's dtype: the
  activations saved for backward are fp32 as well. Seed 000's own script did not call it (bf16 throughout);
* `loss`: "shift_labels" is transformers >= 4.50 (the pinned 5.23: `loss_utils.ForCausalLMLoss` upcasts the
  logits to fp32 and shifts the labels, not the logits); "shift_logits" is the older loss seed 003 ran (fp32
  logits plus a `shift_logits.contiguous()` copy); "fused_linear" is Liger's fused linear cross-entropy, which
  never materialises the logits;
* `trainable_token_rows`: the style rows trained through peft's `trainable_token_indices` (two); peft builds a
  merged copy of the whole embedding matrix in every forward and a dense gradient of it in backward;
* `device`: "cuda" or "cpu" (dropout keeps a 1-byte bool mask on CUDA, a mask of the input's dtype on CPU).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..errors import InputError

DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}
LOSSES = ("shift_labels", "shift_logits", "fused_linear")
ATTENTION = ("sdpa", "flash_attention_2", "eager")
OPTIMIZERS = ("adamw_torch", "adamw_torch_fused", "paged_adamw_8bit", "paged_adamw_32bit", "adamw_bnb_8bit")


@dataclass(frozen=True)
class Setup:
    batch: int = 1                         # per-device micro-batch (sequences)
    accumulation: int = 16
    max_length: int = 1024
    gradient_checkpointing: bool = True
    optim: str = "adamw_torch"
    compute_dtype: str = "bfloat16"
    double_quant: bool = True
    lora_r: int = 16
    lora_targets: tuple[str, ...] = ("all-linear",)
    lora_dropout: float = 0.05
    trainable_token_rows: int = 2
    upcast_non_quantized: bool = True
    loss: str = "shift_labels"
    attention: str = "sdpa"
    device: str = "cuda"
    gpus: int = 1                          # data-parallel replicas (each holds the whole model)
    packing: bool = False                  # issue 11: examples packed into max_length-token sequences, no padding

    def __post_init__(self) -> None:
        for name in ("batch", "accumulation", "max_length", "lora_r", "gpus"):
            if getattr(self, name) < 1:
                raise InputError(f"plan: {name} must be >= 1 (got {getattr(self, name)})")
        for name, value, choices in (("optim", self.optim, OPTIMIZERS), ("loss", self.loss, LOSSES),
                                     ("attention", self.attention, ATTENTION),
                                     ("compute_dtype", self.compute_dtype, tuple(DTYPE_BYTES)),
                                     ("device", self.device, ("cuda", "cpu"))):
            if value not in choices:
                raise InputError(f"plan: {name} must be one of {', '.join(choices)} (got {value!r})")

    @property
    def compute_bytes(self) -> int:
        return DTYPE_BYTES[self.compute_dtype]

    @property
    def float_weight_bytes(self) -> int:
        """Bytes per element of the weights bitsandbytes leaves in floating point."""
        return 4 if self.upcast_non_quantized else self.compute_bytes

    @property
    def residual_bytes(self) -> int:
        """Bytes per element of the hidden states between layers (fp32 once the embedding is fp32)."""
        return max(self.float_weight_bytes, self.compute_bytes)

    def replace(self, **changes: Any) -> "Setup":
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        doc["lora_targets"] = list(self.lora_targets)
        return doc


def setup_from_recipe(recipe, **overrides: Any) -> Setup:
    """The Setup of a resolved Recipe; `overrides` (e.g. gpus=8, loss="shift_logits") win."""
    fields = dict(batch=recipe.per_device_train_batch_size, accumulation=recipe.gradient_accumulation_steps,
                  max_length=recipe.max_length, gradient_checkpointing=recipe.gradient_checkpointing,
                  optim=recipe.optim, compute_dtype=recipe.compute_dtype,
                  double_quant=recipe.bnb_4bit_use_double_quant, lora_r=recipe.lora_r,
                  lora_targets=tuple(recipe.lora_target_modules), lora_dropout=recipe.lora_dropout,
                  device=recipe.device)
    if recipe.liger_kernel:
        fields["loss"] = "fused_linear"
    fields["packing"] = recipe.packing
    if not recipe.uses_style_tokens:
        fields["trainable_token_rows"] = 0      # only verbosity recipes train the TERSE/VERBOSE rows
    attention = recipe.attn_implementation
    if attention:
        # "auto" becomes flash_attention_2 only where flash-attn is installed on an Ampere+ GPU, which the
        # controller cannot see: plan sdpa, the one that needs more memory
        fields["attention"] = "sdpa" if attention == "auto" else attention
    fields.update(overrides)
    return Setup(**fields)
