"""Recipe registry: `load_recipe(name, overrides)` returns a checked, resolved `Recipe`.

Stdlib only: the controller imports this package to check a job's recipe (and resolve YAML recipes onto these
built-ins) before anything connects.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from ..errors import RecipeError
from .base import Recipe
from .overrides import apply_overrides, flatten, merge_overrides, normalize_overrides, recipe_from_dict
from .sections import (LEGACY_EVAL_KEYS, SECTIONS, TASKS, ClassificationEval, GenerationEval,  # noqa: F401
                       GenerationPreset, VerbosityEval)

# recipe name (used in job.json) -> module in this package defining RECIPE
RECIPES = {
    "qwen3-14b-verbosity": "qwen3_14b_verbosity",
    "mistral-7b-verbosity": "mistral_7b_verbosity",
    "tiny-verbosity": "tiny_verbosity",
    "qwen3-0.6b-movielens": "qwen3_0_6b_movielens",
    "qwen3-8b-movielens": "qwen3_8b_movielens",
    "tiny-movielens": "tiny_movielens",
    "qwen3-14b-iac": "qwen3_14b_iac",
    "tiny-iac": "tiny_iac",
}


def available_recipes() -> list[str]:
    return sorted(RECIPES)


def recipe_module_path(name: str) -> Path:
    """The file that defines a built-in recipe (named as the origin of its values)."""
    return Path(__file__).resolve().parent / f"{RECIPES[name]}.py"


def builtin_recipe(name: str) -> Recipe:
    if not isinstance(name, str) or name not in RECIPES:
        raise RecipeError(f"unknown recipe {name!r}", hint=f"available recipes: {', '.join(available_recipes())}")
    module = importlib.import_module(f"{__name__}.{RECIPES[name]}")
    recipe: Recipe = module.RECIPE
    if recipe.name != name:  # pragma: no cover - guards the registry against a copy-paste slip
        raise RecipeError(f"recipe module {RECIPES[name]} defines {recipe.name!r}, registered as {name!r}")
    return recipe


def load_recipe(name: str, overrides: dict[str, Any] | None = None) -> Recipe:
    """The named recipe with `overrides` (job.json "overrides") applied and checked."""
    return apply_overrides(builtin_recipe(name), overrides)


def recipe_summaries() -> list[dict[str, str]]:
    """name, task and description of every built-in recipe (what `orch recipes` lists)."""
    return [{"name": n, "task": builtin_recipe(n).task, "description": builtin_recipe(n).description}
            for n in available_recipes()]


__all__ = ["ClassificationEval", "GenerationEval", "GenerationPreset", "LEGACY_EVAL_KEYS", "Recipe", "RECIPES",
           "SECTIONS", "TASKS",
           "VerbosityEval", "apply_overrides", "available_recipes", "builtin_recipe", "flatten", "load_recipe",
           "merge_overrides", "normalize_overrides", "recipe_from_dict", "recipe_module_path",
           "recipe_summaries"]
