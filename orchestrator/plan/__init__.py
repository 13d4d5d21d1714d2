"""The planner: will a job fit its GPU, and how long will it take? Pure Python (stdlib), run on the controller.

Modules, one noun each: `shape` (the model, from config.json), `setup` (the training run, from the recipe),
`states` (weights, LoRA, gradients, optimizer), `activations` (what scales with tokens), `memory` (the
breakdown and its peak), `gpus` (the datasheet table), `tokens` (dataset token counts), `throughput` (time per
step), `planner` (the Plan, what fits, `fits()` for preflight).
"""

from .gpus import GPU, GPUS, find_gpu
from .memory import GiB, Breakdown, Component, breakdown
from .planner import Plan, fits, make_plan
from .setup import Setup, setup_from_recipe
from .shape import ModelShape, shape_from_config
from .tokens import TokenStats, estimate_from_dataset, from_seqlen_report

__all__ = ["GPU", "GPUS", "GiB", "Breakdown", "Component", "ModelShape", "Plan", "Setup", "TokenStats", "breakdown",
           "estimate_from_dataset", "find_gpu", "fits", "from_seqlen_report", "make_plan", "setup_from_recipe",
           "shape_from_config"]
