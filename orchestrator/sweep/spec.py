"""SPEC.yaml of `orch sweep start`:

    name: lr-sweep                # letters, digits, - and _
    job: tiny                     # the base job of the inventory
    grid:                         # cartesian product of these overrides
      learning_rate: [0.001, 0.003]
      seed: [1, 2, 3]
    paired:                       # axolotl-style: lists zipped together, the result crossed with the grid
      - {lora_r: [8, 16], lora_alpha: [16, 32]}
    metric: train_loss            # from each run's best evaluation, else its last metrics record
    goal: min                     # or max
    instances: [box-a, box-b]     # default: every instance of the inventory; the first is the home (claims)
    gpus: 1                       # GPUs per run (> 1: torchrun DDP)
    lost_after_s: 120             # an unreachable instance whose runs' heartbeat is older: runs lost, requeued
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class Point:
    key: str                      # stable: the same params give the same key on every controller
    params: dict[str, Any]

    @property
    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.params.items())


@dataclass
class SweepSpec:
    name: str
    job: str
    grid: dict[str, list] = field(default_factory=dict)
    paired: list[dict[str, list]] = field(default_factory=list)
    metric: str = "train_loss"
    goal: str = "min"
    instances: list[str] = field(default_factory=list)
    gpus: int = 1
    lost_after_s: float = 120.0

    def __post_init__(self) -> None:
        if not NAME.match(str(self.name)):
            raise InputError(f"sweep name {self.name!r} must be letters, digits, - and _ (at most 64)")
        if self.goal not in ("min", "max"):
            raise InputError(f"sweep {self.name}: goal must be min or max, got {self.goal!r}")
        if not isinstance(self.gpus, int) or self.gpus < 1:
            raise InputError(f"sweep {self.name}: gpus must be a whole number >= 1, got {self.gpus!r}")
        if self.lost_after_s <= 0:
            raise InputError(f"sweep {self.name}: lost_after_s must be positive")
        for key, values in self.grid.items():
            if not isinstance(values, list) or not values:
                raise InputError(f"sweep {self.name}: grid.{key} must be a non-empty list")
        for i, group in enumerate(self.paired):
            lengths = {k: len(v) if isinstance(v, list) else -1 for k, v in group.items()}
            if not group or len(set(lengths.values())) != 1 or -1 in lengths.values() or 0 in lengths.values():
                raise InputError(f"sweep {self.name}: paired[{i}] must hold lists of one same length, got {lengths}",
                                 hint="paired lists are zipped: the n-th values of each list go together")
        overlap = [k for g in self.paired for k in g if k in self.grid]
        if overlap:
            raise InputError(f"sweep {self.name}: {', '.join(overlap)} is both in grid and paired")


def expand(spec: SweepSpec) -> list[Point]:
    """Every point: the grid's cartesian product crossed with each paired group's zipped rows."""
    axes: list[list[dict[str, Any]]] = [[{key: v} for v in values] for key, values in spec.grid.items()]
    for group in spec.paired:
        keys = list(group)
        axes.append([dict(zip(keys, row)) for row in zip(*(group[k] for k in keys))])
    points, seen = [], set()
    for combo in itertools.product(*axes) if axes else [()]:
        params: dict[str, Any] = {}
        for part in combo:
            params.update(part)
        key = point_key(params)
        if key not in seen:
            seen.add(key)
            points.append(Point(key, params))
    return points


def point_key(params: dict[str, Any]) -> str:
    return "p" + hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]


def load_spec(path: str | Path) -> SweepSpec:
    from ..yamlfile import read_yaml

    path = Path(path)
    doc, _lines = read_yaml(path, "sweep spec")
    if not isinstance(doc, dict):
        raise InputError(f"{path}: a sweep spec is a mapping (name, job, grid, ...)")
    known = set(SweepSpec.__dataclass_fields__)
    unknown = sorted(set(doc) - known)
    if unknown:
        raise InputError(f"{path}: unknown key {', '.join(unknown)}", hint=f"known: {', '.join(sorted(known))}")
    for required in ("name", "job"):
        if required not in doc:
            raise InputError(f"{path}: `{required}` is required")
    return SweepSpec(**doc)
