"""`job.json`: {"job": name, "recipe": built-in recipe name, "overrides": {...}, "dataset": path relative to
job.json, "eval_dataset": optional path, "recipe_source": optional {"file": YAML recipe, "origins": {field:
where it was set}}, "replay": optional {what the controller mixed in from the parent stage's dataset:
replay.py}}.

A YAML recipe is resolved on the controller into its built-in base plus overrides (`recipe_source` only records
where each value came from, for run.json); the payload needs no YAML parser.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import JobError
from .recipes import Recipe, load_recipe

JOB_KEYS = {"job", "recipe", "overrides", "dataset", "eval_dataset", "recipe_source", "replay"}


@dataclass(frozen=True)
class Job:
    path: Path
    name: str
    recipe_name: str
    dataset: Path
    overrides: dict[str, Any] = field(default_factory=dict)
    eval_dataset: Path | None = None
    recipe_source: dict[str, Any] | None = None
    replay: dict[str, Any] | None = None

    def recipe(self) -> Recipe:
        return load_recipe(self.recipe_name, self.overrides)

    def to_dict(self) -> dict[str, Any]:
        return {"job": self.name, "recipe": self.recipe_name, "overrides": self.overrides,
                "dataset": str(self.dataset), "eval_dataset": str(self.eval_dataset) if self.eval_dataset else None,
                "recipe_source": self.recipe_source, "replay": self.replay, "job_file": str(self.path)}


def _require_str(doc: dict, key: str, path: Path) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value.strip():
        raise JobError(f'{path}: "{key}" must be a non-empty string (got {value!r})')
    return value


def _relative(doc: dict, key: str, path: Path) -> Path:
    value = _require_str(doc, key, path)
    if Path(value).is_absolute():
        raise JobError(f'{path}: "{key}" must be relative to the job file\'s folder (got {value})')
    return path.parent / value


def read_job(path: str | Path) -> Job:
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise JobError(f"cannot read job file {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise JobError(f"{path}: bad JSON at line {exc.lineno}: {exc.msg}") from None
    if not isinstance(doc, dict):
        raise JobError(f"{path}: expected a JSON object")
    unknown = sorted(set(doc) - JOB_KEYS)
    if unknown:
        raise JobError(f"{path}: unknown key {unknown[0]!r}", hint=f"job.json keys: {', '.join(sorted(JOB_KEYS))}")
    overrides = doc.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise JobError(f'{path}: "overrides" must be an object of recipe fields')
    source = doc.get("recipe_source")
    if source is not None and not isinstance(source, dict):
        raise JobError(f'{path}: "recipe_source" must be an object')
    replay = doc.get("replay")
    if replay is not None and not isinstance(replay, dict):
        raise JobError(f'{path}: "replay" must be an object')
    dataset = _relative(doc, "dataset", path)
    eval_dataset = _relative(doc, "eval_dataset", path) if doc.get("eval_dataset") is not None else None
    return Job(path=path, name=_require_str(doc, "job", path), recipe_name=_require_str(doc, "recipe", path),
               dataset=dataset, overrides=overrides, eval_dataset=eval_dataset, recipe_source=source,
               replay=replay)
