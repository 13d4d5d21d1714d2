"""Changing a recipe: job.json "overrides", YAML recipe fields, stored recipes (run.json, payload_meta.json).

An override is `{field: value}` for any recipe field except `name`, plus `evaluation: {section field: value}`
(merged into the task's section; a preset such as `terse` merges field by field too). The flat names of the
verbosity-only days keep working: `eval_terse`, `eval_verbose`, `eval_gate`, `eval_batch_size` and
`eval_after_train` set `evaluation.terse`, `.verbose`, `.gate`, `.batch_size`, `.after_train`, and errors name
them as written. Changing `task` starts from that task's default evaluation section.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import RecipeError
from .base import Recipe
from .checks import unknown_field
from .sections import LEGACY_EVAL_KEYS, SECTIONS, TASKS, GenerationPreset

RECIPE_FIELDS = {f.name for f in dataclasses.fields(Recipe)}
PRESET_FIELDS = {f.name for f in dataclasses.fields(GenerationPreset)}
OVERRIDABLE = (RECIPE_FIELDS - {"name"}) | set(LEGACY_EVAL_KEYS)


def _merge_preset(preset: GenerationPreset, value: Any, label: str, owner: str) -> GenerationPreset:
    if not isinstance(value, dict):
        raise RecipeError(f"{owner}: field '{label}' must be an object of preset fields "
                          f"({', '.join(sorted(PRESET_FIELDS))}), got {type(value).__name__}", field=label)
    for sub in value:
        if sub not in PRESET_FIELDS:
            raise unknown_field(f"'{label}'", sub, PRESET_FIELDS)
    try:
        return dataclasses.replace(preset, **value)
    except RecipeError as exc:
        raise RecipeError(f"{owner}, {label}: {exc.message}", field=exc.field) from None


def merge_section(section, value: Any, label: str, owner: str):
    """`section` with the fields of `value` (a dict) replaced; presets merge field by field."""
    if not isinstance(value, dict):
        raise RecipeError(f"{owner}: field '{label}' must be an object of {type(section).__name__} fields, "
                          f"got {type(value).__name__}", field=label)
    known = {f.name: f for f in dataclasses.fields(section)}
    changes = {}
    for key, sub in value.items():
        if key not in known:
            raise unknown_field(f"'{label}'", key, known)
        current = getattr(section, key)
        changes[key] = _merge_preset(current, sub, f"{label}.{key}", owner) if isinstance(
            current, GenerationPreset) else sub
    try:
        return dataclasses.replace(section, **changes)
    except RecipeError as exc:
        raise RecipeError(f"{owner}, {label}: {exc.message}", field=exc.field) from None


def _target_task(recipe: Recipe, overrides: dict[str, Any]) -> str:
    task = overrides.get("task", recipe.task)
    if not isinstance(task, str) or task not in TASKS:
        raise RecipeError(f"recipe '{recipe.name}': field 'task' must be one of {', '.join(TASKS)} (got {task!r})",
                          field="task")
    return task


def apply_overrides(recipe: Recipe, overrides: dict[str, Any] | None) -> Recipe:
    """A copy of `recipe` with `overrides` applied; unknown fields and wrong types are refused by name."""
    if not overrides:
        return recipe
    if not isinstance(overrides, dict):
        raise RecipeError(f"recipe overrides must be a JSON object, got {type(overrides).__name__}")
    owner = f"recipe '{recipe.name}'"
    task = _target_task(recipe, overrides)
    section = recipe.evaluation if task == recipe.task else SECTIONS[task]()
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in OVERRIDABLE:
            raise unknown_field("recipe", key, OVERRIDABLE - set(LEGACY_EVAL_KEYS))
        if key == "evaluation":
            section = merge_section(section, value, "evaluation", owner)
        elif key in LEGACY_EVAL_KEYS:
            section = _legacy(section, key, value, owner)
        else:
            changes[key] = value
    return dataclasses.replace(recipe, **changes, evaluation=section)


def _legacy(section, key: str, value: Any, owner: str):
    name = LEGACY_EVAL_KEYS[key]
    if not any(f.name == name for f in dataclasses.fields(section)):
        raise RecipeError(f"{owner}: field '{key}' does not apply to a {type(section).__name__} section",
                          hint=f"fields there: {', '.join(f.name for f in dataclasses.fields(section))}",
                          field=key)
    current = getattr(section, name)
    if isinstance(current, GenerationPreset):
        return dataclasses.replace(section, **{name: _merge_preset(current, value, key, owner)})
    try:
        return dataclasses.replace(section, **{name: value})
    except RecipeError as exc:
        raise RecipeError(f"{owner}, {key}: {exc.message}", field=key) from None


def normalize_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """The same overrides with the flat legacy names moved under "evaluation" (for merging layers)."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        if key in LEGACY_EVAL_KEYS:
            out.setdefault("evaluation", {})[LEGACY_EVAL_KEYS[key]] = value
        elif key == "evaluation" and isinstance(value, dict):
            out.setdefault("evaluation", {}).update(value)
        else:
            out[key] = value
    return out


def merge_overrides(*layers: dict[str, Any]) -> dict[str, Any]:
    """Later layers win; "evaluation" and its presets merge field by field. Each layer is normalized first."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in normalize_overrides(layer).items():
            if key == "evaluation" and isinstance(merged.get(key), dict) and isinstance(value, dict):
                for sub, sub_value in value.items():
                    old = merged[key].get(sub)
                    merged[key][sub] = {**old, **sub_value} if isinstance(old, dict) and isinstance(
                        sub_value, dict) else sub_value
            else:
                merged[key] = value
    return merged


def recipe_from_dict(data: dict[str, Any]) -> Recipe:
    """Rebuild a resolved recipe (as stored in run.json / the adapter's payload_meta.json, old flat form too)."""
    data = dict(data)
    legacy = {k: data.pop(k) for k in list(data) if k in LEGACY_EVAL_KEYS}
    evaluation = data.pop("evaluation", None)
    unknown = set(data) - RECIPE_FIELDS
    if unknown:
        raise unknown_field("recipe", sorted(unknown)[0], RECIPE_FIELDS)
    missing = [n for n in ("name", "description") if n not in data]
    if missing:
        raise RecipeError(f"stored recipe lacks field '{missing[0]}'", field=missing[0])
    recipe = Recipe(**data)
    return apply_overrides(recipe, {**legacy, **({"evaluation": evaluation} if evaluation else {})})


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{"evaluation.terse.max_new_tokens": 20, ...}: sections and presets become dotted leaves."""
    if dataclasses.is_dataclass(value):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, dict) and (not prefix or prefix.split(".")[0] == "evaluation"):
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(flatten(sub, f"{prefix}.{key}" if prefix else key))
        return out
    return {prefix: value}
