"""The typed `Recipe`: every number a training run uses, checked when it is built.

A recipe file (one per model, e.g. `qwen3_14b_verbosity.py`) defines `RECIPE = Recipe(...)`. A job may override
any field through job.json's "overrides"; `apply_overrides` refuses unknown fields and wrong types by name,
and `Recipe.__post_init__` refuses out-of-range values by name.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from typing import Any

from ..errors import RecipeError

DEVICES = ("cuda", "cpu")
COMPUTE_DTYPES = ("bfloat16", "float16", "float32")
QUANT_TYPES = ("nf4", "fp4")
SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup")
OPTIMIZERS = ("adamw_torch", "adamw_torch_fused", "paged_adamw_8bit", "paged_adamw_32bit", "adamw_bnb_8bit")
OVERLENGTH_POLICIES = ("drop", "error")
ATTENTION_IMPLEMENTATIONS = ("sdpa", "flash_attention_2", "eager")


def _fail(owner: str, name: str, problem: str) -> typing.NoReturn:
    raise RecipeError(f"{owner}: field '{name}' {problem}")


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _check_value_type(owner: str, name: str, hint: Any, value: Any) -> Any:
    """Return `value` converted to the field's type (int->float, list->tuple) or raise RecipeError."""
    origin = typing.get_origin(hint)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif origin is tuple:
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return tuple(value)
    elif origin is dict:
        if isinstance(value, dict) and all(isinstance(k, str) for k in value) and all(
                isinstance(v, (str, int, float, bool)) for v in value.values()):
            return dict(value)
    elif dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
    else:  # pragma: no cover - a recipe field with a type this checker does not know is a programming error
        raise TypeError(f"{owner}: unsupported field type {hint!r} for '{name}'")
    _fail(owner, name, f"must be {_type_name(hint)}, got {type(value).__name__} {value!r}")


def check_types(obj: Any, owner: str) -> None:
    """Type-check (and normalise) every field of a frozen dataclass instance in place."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = _check_value_type(owner, f.name, hints[f.name], getattr(obj, f.name))
        object.__setattr__(obj, f.name, value)


@dataclass(frozen=True)
class GenerationPreset:
    """How one style is decoded during evaluation (passed to `model.generate`); sampling settings not named here
    (e.g. top_k) come from the model's generation_config.json."""

    max_new_tokens: int
    min_new_tokens: int = 0
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        owner = "generation preset"
        check_types(self, owner)
        if self.max_new_tokens < 1:
            _fail(owner, "max_new_tokens", f"must be >= 1 (got {self.max_new_tokens})")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            _fail(owner, "min_new_tokens", f"must be between 0 and max_new_tokens={self.max_new_tokens} "
                                           f"(got {self.min_new_tokens})")
        if self.temperature <= 0:
            _fail(owner, "temperature", f"must be > 0 (got {self.temperature})")
        if not 0 < self.top_p <= 1:
            _fail(owner, "top_p", f"must be in (0, 1] (got {self.top_p})")

    def generate_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample}
        if self.min_new_tokens:
            kwargs["min_new_tokens"] = self.min_new_tokens
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p)
        return kwargs


@dataclass(frozen=True)
class Recipe:
    """Everything a QLoRA style-token run needs besides the model directory and the dataset."""

    name: str
    description: str
    # --- model loading (bitsandbytes 4-bit; the payload refuses to train a model that is not 4-bit) ---
    device: str = "cuda"                      # "cuda": device_map={"": 0}, i.e. the one GPU the supervisor picked
    bnb_4bit_quant_type: str = "nf4"
    bnb_4bit_use_double_quant: bool = True
    compute_dtype: str = "bfloat16"           # bnb_4bit_compute_dtype and the dtype of non-quantized weights
    chat_template_kwargs: dict[str, bool | str | int] = field(default_factory=dict)
    # --- LoRA ---
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: tuple[str, ...] = ("all-linear",)
    # --- optimisation ---
    learning_rate: float = 2e-4
    num_train_epochs: float = 2.0
    max_steps: int = -1                       # > 0 overrides num_train_epochs
    per_device_train_batch_size: int = 1
    gradient_accumulation_steps: int = 16
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    optim: str = "adamw_torch"
    gradient_checkpointing: bool = True
    bf16: bool = True
    seed: int = 42
    max_length: int = 1024
    on_overlength: str = "drop"               # "drop": skip and report examples longer than max_length; "error"
    # --- checkpoints and logs ---
    logging_steps: int = 25
    save_steps: int = 500
    save_total_limit: int = 2
    dataloader_num_workers: int = 2
    dataloader_pin_memory: bool = True
    torch_threads: int = 0                    # > 0: torch.set_num_threads(n) for CPU work; 0: torch's default
    # --- speed levers: each measured by bench/gpu_train.py before it becomes a recipe's default ---
    attn_implementation: str = "sdpa"         # from_pretrained(attn_implementation=...); "flash_attention_2" needs
                                              # the flash-attn package and an Ampere-or-newer GPU
    liger_kernel: bool = False                # TrainingArguments.use_liger_kernel: Liger's Triton kernels, incl. the
                                              # fused linear cross-entropy that never builds the logits (CUDA only)
    # --- evaluation (remote_payload/evaluate.py) ---
    eval_terse: GenerationPreset = field(default_factory=lambda: GenerationPreset(max_new_tokens=20))
    eval_verbose: GenerationPreset = field(default_factory=lambda: GenerationPreset(max_new_tokens=100))
    eval_gate: float = 3.0                    # verbose/terse mean-token ratio the adapter must reach
    eval_batch_size: int = 8
    eval_after_train: bool = True

    def __post_init__(self) -> None:
        owner = f"recipe '{self.name}'" if isinstance(self.name, str) else "recipe"
        check_types(self, owner)
        self._check_choices(owner)
        self._check_ranges(owner)

    def _check_choices(self, owner: str) -> None:
        for name, choices in (("device", DEVICES), ("compute_dtype", COMPUTE_DTYPES),
                              ("bnb_4bit_quant_type", QUANT_TYPES), ("lr_scheduler_type", SCHEDULERS),
                              ("optim", OPTIMIZERS), ("on_overlength", OVERLENGTH_POLICIES),
                              ("attn_implementation", ATTENTION_IMPLEMENTATIONS)):
            if getattr(self, name) not in choices:
                _fail(owner, name, f"must be one of {', '.join(choices)} (got {getattr(self, name)!r})")
        if self.bf16 and self.compute_dtype != "bfloat16":
            _fail(owner, "bf16", f"is true but compute_dtype is {self.compute_dtype!r}; set both consistently")
        if self.device == "cpu" and self.compute_dtype == "float16":
            _fail(owner, "compute_dtype", "float16 is not supported on cpu; use float32 or bfloat16")
        if self.device == "cpu" and (self.liger_kernel or self.attn_implementation == "flash_attention_2"):
            lever = "liger_kernel" if self.liger_kernel else "attn_implementation"
            _fail(owner, lever, "needs device cuda (Liger and flash-attention run on NVIDIA GPUs only)")
        if not self.lora_target_modules:
            _fail(owner, "lora_target_modules", "must name at least one module (or 'all-linear')")

    def _check_ranges(self, owner: str) -> None:
        positive = ("lora_r", "lora_alpha", "learning_rate", "per_device_train_batch_size",
                    "gradient_accumulation_steps", "max_length", "logging_steps", "save_steps",
                    "save_total_limit", "eval_batch_size", "max_grad_norm", "eval_gate")
        for name in positive:
            if getattr(self, name) <= 0:
                _fail(owner, name, f"must be > 0 (got {getattr(self, name)})")
        if not 0 <= self.lora_dropout < 1:
            _fail(owner, "lora_dropout", f"must be in [0, 1) (got {self.lora_dropout})")
        if not 0 <= self.warmup_ratio < 1:
            _fail(owner, "warmup_ratio", f"must be in [0, 1) (got {self.warmup_ratio})")
        if self.weight_decay < 0:
            _fail(owner, "weight_decay", f"must be >= 0 (got {self.weight_decay})")
        if self.max_steps == 0 or self.max_steps < -1:
            _fail(owner, "max_steps", f"must be -1 (train num_train_epochs) or > 0 (got {self.max_steps})")
        if self.max_steps == -1 and self.num_train_epochs <= 0:
            _fail(owner, "num_train_epochs", f"must be > 0 (got {self.num_train_epochs})")
        if self.torch_threads < 0:
            _fail(owner, "torch_threads", f"must be >= 0 (got {self.torch_threads})")
        if self.dataloader_num_workers < 0:
            _fail(owner, "dataloader_num_workers", f"must be >= 0 (got {self.dataloader_num_workers})")

    @property
    def lora_targets(self) -> str | list[str]:
        """What LoraConfig(target_modules=...) receives."""
        if self.lora_target_modules == ("all-linear",):
            return "all-linear"
        return list(self.lora_target_modules)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


RECIPE_FIELDS = {f.name: f for f in dataclasses.fields(Recipe)}
PRESET_FIELDS = {f.name for f in dataclasses.fields(GenerationPreset)}


def _unknown(kind: str, key: str, known: typing.Iterable[str]) -> RecipeError:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"known fields: {', '.join(sorted(known))}"
    return RecipeError(f"unknown {kind} field '{key}'", hint=hint)


def _preset_override(recipe: Recipe, key: str, value: Any) -> GenerationPreset:
    if not isinstance(value, dict):
        raise RecipeError(f"recipe '{recipe.name}': field '{key}' must be an object of preset fields "
                          f"({', '.join(sorted(PRESET_FIELDS))}), got {type(value).__name__}")
    for sub in value:
        if sub not in PRESET_FIELDS:
            raise _unknown(f"'{key}'", sub, PRESET_FIELDS)
    try:
        return dataclasses.replace(getattr(recipe, key), **value)
    except RecipeError as exc:
        raise RecipeError(f"recipe '{recipe.name}', {key}: {exc.message}") from None


def apply_overrides(recipe: Recipe, overrides: dict[str, Any] | None) -> Recipe:
    """A copy of `recipe` with `overrides` applied; unknown fields and wrong types are refused by name."""
    if not overrides:
        return recipe
    if not isinstance(overrides, dict):
        raise RecipeError(f"recipe overrides must be a JSON object, got {type(overrides).__name__}")
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in RECIPE_FIELDS or key == "name":
            raise _unknown("recipe", key, (k for k in RECIPE_FIELDS if k != "name"))
        if RECIPE_FIELDS[key].type in ("GenerationPreset", GenerationPreset):
            value = _preset_override(recipe, key, value)
        changes[key] = value
    return dataclasses.replace(recipe, **changes)


def recipe_from_dict(data: dict[str, Any]) -> Recipe:
    """Rebuild a resolved recipe (as stored in run.json / the adapter's payload_meta.json)."""
    data = dict(data)
    for key in ("eval_terse", "eval_verbose"):
        if isinstance(data.get(key), dict):
            unknown = set(data[key]) - PRESET_FIELDS
            if unknown:
                raise _unknown(f"'{key}'", sorted(unknown)[0], PRESET_FIELDS)
            data[key] = GenerationPreset(**data[key])
    unknown = set(data) - set(RECIPE_FIELDS)
    if unknown:
        raise _unknown("recipe", sorted(unknown)[0], RECIPE_FIELDS)
    missing = [n for n in ("name", "description") if n not in data]
    if missing:
        raise RecipeError(f"stored recipe lacks field '{missing[0]}'")
    return Recipe(**data)

