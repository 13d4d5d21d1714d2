"""The typed `Recipe`: every number a training run uses, checked when it is built.

A recipe file (one per model and task, e.g. `qwen3_14b_verbosity.py`) defines `RECIPE = Recipe(...)`. A recipe
names its `task` and carries that task's evaluation section (`sections.py`). A job may override any field
through job.json's "overrides" (`overrides.py`); unknown fields and wrong types are refused by name, and
`__post_init__` refuses out-of-range values by name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .checks import check_choice, check_positive, check_types, fail
from .sections import SECTIONS, TASKS, ClassificationEval, GenerationEval, VerbosityEval

DEVICES = ("cuda", "cpu")
COMPUTE_DTYPES = ("bfloat16", "float16", "float32")
QUANT_TYPES = ("nf4", "fp4")
SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup")
OPTIMIZERS = ("adamw_torch", "adamw_torch_fused", "paged_adamw_8bit", "paged_adamw_32bit", "adamw_bnb_8bit")
OVERLENGTH_POLICIES = ("drop", "error")
ATTENTION = ("auto", "flash_attention_2", "sdpa", "eager")


@dataclass(frozen=True)
class Recipe:
    """Everything a QLoRA run needs besides the model directory and the datasets."""

    name: str
    description: str
    task: str = "verbosity"                   # verbosity | classification | generation (sections.py)
    # --- model loading (bitsandbytes 4-bit; the payload refuses to train a model that is not 4-bit) ---
    device: str = "cuda"                      # "cuda": device_map={"": 0}, i.e. the one GPU the supervisor picked
    bnb_4bit_quant_type: str = "nf4"
    bnb_4bit_use_double_quant: bool = True
    compute_dtype: str = "bfloat16"           # bnb_4bit_compute_dtype and the dtype of non-quantized weights
    attn_implementation: str = "auto"         # auto: flash_attention_2 when installed and supported, else sdpa
    chat_template_kwargs: dict[str, bool | str | int] = field(default_factory=dict)
    system_prompt: str = ""                   # system turn for examples that bring none of their own
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
    packing: bool = False                     # several examples per sequence, attention kept within each
    # --- checkpoints and logs ---
    logging_steps: int = 25
    save_steps: int = 500
    save_total_limit: int = 2
    dataloader_num_workers: int = 2
    dataloader_pin_memory: bool = True
    torch_threads: int = 0                    # > 0: torch.set_num_threads(n) for CPU work; 0: torch's default
    # --- DDP (gpus > 1): a rank whose peer process is gone ends at once; one whose peer is alive but has not
    # beaten for this long ends too, so a frozen peer fails the run instead of hanging it (gloo ignores
    # ddp_timeout on CPU). The heartbeat is a thread beating every 2 s (distributed.HEARTBEAT_S) even while
    # its rank computes or saves, so only a stopped process or a long GIL-holding call goes quiet; 300 s leaves
    # room for the latter on a loaded box (not measured on a GPU here).
    ddp_peer_timeout_s: float = 300.0
    # --- speed levers: each measured by bench/gpu_train.py before it becomes a recipe's default ---
    liger_kernel: bool = False                # TrainingArguments.use_liger_kernel: Liger's Triton kernels, incl. the
                                              # fused linear cross-entropy that never builds the logits (CUDA only)
    # --- evaluation during training (needs the job's eval_dataset) ---
    eval_steps: int = 0                       # 0: no evaluation while training
    eval_max_samples: int = 1000              # eval examples whose loss is computed at each evaluation
    early_stopping_patience: int = 0          # 0: off; n: stop after n evaluations without a new best
    metric_for_best_model: str = "loss"       # "loss" or one of the task's metrics (e.g. "f1")
    load_best_model_at_end: bool = False      # the adapter saved is the best evaluation's, not the last step's
    # --- the task's evaluation (evaluate.py); None: the task's defaults ---
    evaluation: VerbosityEval | ClassificationEval | GenerationEval | None = None

    def __post_init__(self) -> None:
        owner = f"recipe '{self.name}'" if isinstance(self.name, str) else "recipe"
        if isinstance(self.task, str) and self.task in TASKS and self.evaluation is None:
            object.__setattr__(self, "evaluation", SECTIONS[self.task]())
        check_types(self, owner)
        self._check_choices(owner)
        self._check_ranges(owner)
        self._check_evaluation(owner)

    def _check_choices(self, owner: str) -> None:
        for name, choices in (("task", TASKS), ("device", DEVICES), ("compute_dtype", COMPUTE_DTYPES),
                              ("bnb_4bit_quant_type", QUANT_TYPES), ("lr_scheduler_type", SCHEDULERS),
                              ("optim", OPTIMIZERS), ("on_overlength", OVERLENGTH_POLICIES),
                              ("attn_implementation", ATTENTION)):
            check_choice(self, owner, name, choices)
        if self.bf16 and self.compute_dtype != "bfloat16":
            fail(owner, "bf16", f"is true but compute_dtype is {self.compute_dtype!r}; set both consistently")
        if self.device == "cpu" and self.compute_dtype == "float16":
            fail(owner, "compute_dtype", "float16 is not supported on cpu; use float32 or bfloat16")
        if self.device == "cpu" and self.attn_implementation == "flash_attention_2":
            fail(owner, "attn_implementation", "flash_attention_2 needs a CUDA GPU; use auto, sdpa or eager")
        if self.device == "cpu" and self.liger_kernel:
            fail(owner, "liger_kernel", "needs device cuda (Liger's kernels run on NVIDIA GPUs only)")
        if not self.lora_target_modules:
            fail(owner, "lora_target_modules", "must name at least one module (or 'all-linear')")

    def _check_ranges(self, owner: str) -> None:
        check_positive(self, owner, ("lora_r", "lora_alpha", "learning_rate", "per_device_train_batch_size",
                                     "gradient_accumulation_steps", "max_length", "logging_steps", "save_steps",
                                     "save_total_limit", "max_grad_norm", "eval_max_samples", "ddp_peer_timeout_s"))
        for name in ("lora_dropout", "warmup_ratio"):
            if not 0 <= getattr(self, name) < 1:
                fail(owner, name, f"must be in [0, 1) (got {getattr(self, name)})")
        for name in ("weight_decay", "torch_threads", "dataloader_num_workers", "eval_steps",
                     "early_stopping_patience"):
            if getattr(self, name) < 0:
                fail(owner, name, f"must be >= 0 (got {getattr(self, name)})")
        if self.max_steps == 0 or self.max_steps < -1:
            fail(owner, "max_steps", f"must be -1 (train num_train_epochs) or > 0 (got {self.max_steps})")
        if self.max_steps == -1 and self.num_train_epochs <= 0:
            fail(owner, "num_train_epochs", f"must be > 0 (got {self.num_train_epochs})")

    def _check_evaluation(self, owner: str) -> None:
        if not isinstance(self.evaluation, SECTIONS[self.task]):
            fail(owner, "evaluation", f"must be a {SECTIONS[self.task].__name__} section for task {self.task!r} "
                                      f"(got {type(self.evaluation).__name__})")
        if self.metric_for_best_model not in self.evaluation.metrics:
            fail(owner, "metric_for_best_model", f"must be one of {', '.join(self.evaluation.metrics)} for task "
                                                 f"{self.task!r} (got {self.metric_for_best_model!r})")
        if not self.eval_steps:
            for name in ("early_stopping_patience", "load_best_model_at_end"):
                if getattr(self, name):
                    fail(owner, name, "needs evaluation during training: set eval_steps > 0")
        elif self.load_best_model_at_end and self.save_steps % self.eval_steps:
            fail(owner, "save_steps", f"must be a multiple of eval_steps={self.eval_steps} when "
                                      f"load_best_model_at_end is true (got {self.save_steps})")

    @property
    def lora_targets(self) -> str | list[str]:
        """What LoraConfig(target_modules=...) receives."""
        if self.lora_target_modules == ("all-linear",):
            return "all-linear"
        return list(self.lora_target_modules)

    @property
    def greater_is_better(self) -> bool:
        return self.metric_for_best_model != "loss"

    @property
    def uses_style_tokens(self) -> bool:
        return self.task == "verbosity"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
