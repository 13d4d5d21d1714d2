"""A job's inputs checked together: the recipe's task decides what the datasets must hold, and whether an
evaluation dataset is required. Stdlib only: the controller runs exactly these checks before anything connects
(`orchestrator/bundle.py`), and the payload runs them again before loading a model.
"""

from __future__ import annotations

from pathlib import Path

from .dataset import DataSpec, Dataset, load_dataset
from .errors import InputError
from .recipes import Recipe


def check_inputs(recipe: Recipe, dataset: str | Path, eval_dataset: str | Path | None = None
                 ) -> tuple[Dataset, Dataset | None]:
    """(training data, evaluation data or None), every line checked for the recipe's task."""
    spec = DataSpec.from_recipe(recipe)
    train = load_dataset(dataset, spec)
    evaluation = load_dataset(eval_dataset, spec) if eval_dataset else None
    if recipe.eval_steps and evaluation is None:
        raise InputError(f"recipe '{recipe.name}' evaluates every {recipe.eval_steps} steps, but the job has no "
                         "eval_dataset",
                         hint="add eval_dataset: FILE to the job (held-out examples, e.g. seed 003's eval.json), "
                              "or override eval_steps: 0, early_stopping_patience: 0, load_best_model_at_end: false")
    return train, evaluation
