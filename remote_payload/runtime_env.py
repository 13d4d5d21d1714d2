"""Process environment for training, applied by the payload itself before torch is imported.

Seed 000's "Environment Setup" exported these by hand before every run; forgetting one (or a stale accelerate
config) produced its `device() received an invalid combination of arguments` failure. The payload is started
with plain `python -m`, never `accelerate launch`, so no accelerate config file is read: the Trainer builds its
Accelerator from these variables and the TrainingArguments alone (seed 000's `write_basic_config` is therefore
not needed, and the payload does not write into the instance's home directory).

Values already present in the environment win (`setdefault`): e.g. the supervisor may have chosen
CUDA_VISIBLE_DEVICES for the GPU it locked.
"""

from __future__ import annotations

import os

SEED_000_ENV = {
    "CUDA_VISIBLE_DEVICES": "0",                          # one GPU, as device_map={"": 0} assumes
    "ACCELERATE_USE_DEEPSPEED": "0",
    "ACCELERATE_USE_FSDP": "0",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",   # fewer fragmentation OOMs with variable lengths
}
PAYLOAD_ENV = {
    "HF_HUB_OFFLINE": "1",                 # weights are local (models_dir); never reach for the Hub
    "TOKENIZERS_PARALLELISM": "false",     # no fork warnings / deadlocks with dataloader workers
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",   # the run log is a file; progress bars only clutter it
}


def apply_runtime_env(mixed_precision: str | None = None) -> dict[str, str]:
    """Set the defaults above (and ACCELERATE_MIXED_PRECISION "bf16" | "no" for training); return the values."""
    for key, value in {**SEED_000_ENV, **PAYLOAD_ENV}.items():
        if key == "PYTORCH_CUDA_ALLOC_CONF" and "PYTORCH_ALLOC_CONF" in os.environ:
            continue  # torch >= 2.9's name for the same setting, already chosen by the user
        os.environ.setdefault(key, value)
    if mixed_precision is not None:
        os.environ["ACCELERATE_MIXED_PRECISION"] = mixed_precision
    keys = [*SEED_000_ENV, *PAYLOAD_ENV, "PYTORCH_ALLOC_CONF", "ACCELERATE_MIXED_PRECISION"]
    return {key: os.environ[key] for key in keys if key in os.environ}


def apply_torch_threads(threads: int) -> None:
    """torch.set_num_threads(threads) when the recipe asks for a fixed count (> 0)."""
    if threads > 0:
        import torch

        torch.set_num_threads(threads)


def quiet_known_warnings() -> None:
    """Drop warnings the run log cannot act on: peft 0.21 still calls transformers 5's deprecated
    gradient-checkpointing names (`is_gradient_checkpointing`, ...), which transformers reports on every load."""
    import warnings

    warnings.filterwarnings("ignore", message=r".*is deprecated and will be removed in v6.*", category=FutureWarning)
