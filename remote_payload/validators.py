"""Answer validators for `generation` recipes: name -> function(answer text) -> (passed, detail).

The registry is the hook the stage-2 (IaC) work fills with real tools (terraform validate, tflint, cfn-lint,
kubeconform, ...). A recipe's `evaluation.validators` may only name registered validators; with none named,
generation evaluation reports the answers and their lengths and gates nothing. Stdlib only: the controller
imports this module (through the recipes) to check recipes before anything connects.
"""

from __future__ import annotations

from typing import Callable

Validator = Callable[[str], "tuple[bool, str]"]

VALIDATORS: dict[str, Validator] = {}


def run_validators(names: tuple[str, ...] | list[str], answer: str) -> dict[str, dict]:
    """{validator name: {"passed": bool, "detail": str}} for one answer."""
    results = {}
    for name in names:
        passed, detail = VALIDATORS[name](answer)
        results[name] = {"passed": bool(passed), "detail": detail}
    return results
