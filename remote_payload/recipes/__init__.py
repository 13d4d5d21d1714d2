"""Recipe registry: `load_recipe(name, overrides)` returns a checked, resolved `Recipe`."""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import RecipeError
from .base import GenerationPreset, Recipe, apply_overrides, recipe_from_dict

# recipe name (used in job.json) -> module in this package defining RECIPE
RECIPES = {
    "qwen3-14b-verbosity": "qwen3_14b_verbosity",
    "mistral-7b-verbosity": "mistral_7b_verbosity",
    "tiny-verbosity": "tiny_verbosity",
}


def available_recipes() -> list[str]:
    return sorted(RECIPES)


def load_recipe(name: str, overrides: dict[str, Any] | None = None) -> Recipe:
    """The named recipe with `overrides` (job.json "overrides") applied and checked."""
    if not isinstance(name, str) or name not in RECIPES:
        raise RecipeError(f"unknown recipe {name!r}", hint=f"available recipes: {', '.join(available_recipes())}")
    module = importlib.import_module(f"{__name__}.{RECIPES[name]}")
    recipe: Recipe = module.RECIPE
    if recipe.name != name:  # pragma: no cover - guards the registry against a copy-paste slip
        raise RecipeError(f"recipe module {RECIPES[name]} defines {recipe.name!r}, registered as {name!r}")
    return apply_overrides(recipe, overrides)


__all__ = ["GenerationPreset", "Recipe", "RECIPES", "available_recipes", "load_recipe", "recipe_from_dict"]
