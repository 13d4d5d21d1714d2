"""Which attention implementation a run uses (`attn_implementation`, seed 003's `flash_attn: auto`).

`auto` picks flash_attention_2 when the `flash_attn` package is installed, the run is on a CUDA GPU of compute
capability >= 8.0 (Ampere: A10G, A100, L4, H100, RTX 30xx/40xx) and computes in bf16/fp16 -- FA2's
requirements; otherwise PyTorch's sdpa; eager only for a model class that supports neither. An explicit choice
is checked the same way and refused with the reason. The choice and why go into run.json.

Packed batches (`packing.py`) keep attention inside each example with every one of these: flash_attention_2
reads the example boundaries from the restarting position ids of one flattened row, sdpa and eager get a
block-diagonal mask that transformers builds from the same position ids, one row per pack
(tests/test_payload_packing.py checks sdpa and eager on CPU).
"""

from __future__ import annotations

import importlib.util
from typing import Any

from .errors import ModelError


def _model_class(model_dir):
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(model_dir))
    return AutoModelForCausalLM._model_mapping[type(config)]


def _flash_attention_problem(recipe) -> str | None:
    """Why flash_attention_2 cannot run here, or None when it can."""
    if recipe.device != "cuda":
        return f"device is {recipe.device}"
    if importlib.util.find_spec("flash_attn") is None:
        return "the flash_attn package is not installed"
    import torch

    if not torch.cuda.is_available():
        return "torch sees no CUDA GPU"
    major, minor = torch.cuda.get_device_capability(0)
    if major < 8:
        return f"GPU compute capability {major}.{minor} < 8.0"
    if recipe.compute_dtype not in ("bfloat16", "float16"):
        return f"compute_dtype {recipe.compute_dtype} (FA2 needs bfloat16 or float16)"
    return None


def choose_attention(recipe, model_dir) -> dict[str, Any]:
    """{"requested", "chosen", "reason"} for this recipe, machine and model."""
    requested = recipe.attn_implementation
    cls = _model_class(model_dir)
    flash_problem = _flash_attention_problem(recipe)
    if not getattr(cls, "_supports_flash_attn", False):
        flash_problem = flash_problem or f"{cls.__name__} does not support it"
    if requested == "flash_attention_2" and flash_problem:
        raise ModelError(f"attn_implementation flash_attention_2 cannot be used: {flash_problem}",
                         hint="set attn_implementation: auto (or sdpa) in the job's overrides")
    if requested == "sdpa" and not getattr(cls, "_supports_sdpa", False):
        raise ModelError(f"attn_implementation sdpa is not supported by {cls.__name__}",
                         hint="set attn_implementation: auto (or eager) in the job's overrides")
    if requested != "auto":
        return {"requested": requested, "chosen": requested, "reason": "set by the recipe"}
    if flash_problem is None:
        return {"requested": "auto", "chosen": "flash_attention_2", "reason": "flash_attn installed, GPU supports it"}
    if getattr(cls, "_supports_sdpa", False):
        return {"requested": "auto", "chosen": "sdpa", "reason": f"no flash_attention_2: {flash_problem}"}
    return {"requested": "auto", "chosen": "eager", "reason": f"{cls.__name__} supports neither FA2 nor sdpa"}
