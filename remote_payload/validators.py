"""Answer validators for `generation` recipes: name -> function(answer text) -> (passed, detail).

A recipe's `evaluation.validators` may only name registered validators; with none named, generation evaluation
reports the answers and their lengths and gates nothing. Registered: `iac-<kind>` for each IaC kind
(terraform, cloudformation, kubernetes, helm, pulumi): the answer's code of that kind, validated by every
validator remote_payload/iac runs for the kind; it passes when none of them fails ("unchecked" is not a
failure, and says why in the detail). They need the IaC validators venv where the evaluation runs
(`python3 -m remote_payload.iac.install --root DIR`, found through $ORCH_VALIDATORS_DIR). The seed's gates over a
whole prompt set (validate >= 85%, ...) are `orch eval --suite iac`; these judge one answer at a time. Stdlib
only: the controller imports this module (through the recipes) to check recipes before anything connects.
"""

from __future__ import annotations

from typing import Callable

from .iac.kinds import KINDS

Validator = Callable[[str], "tuple[bool, str]"]


def iac_validator(kind: str) -> Validator:
    """One answer through remote_payload/iac's validators for `kind`: (no validator failed, what each said)."""

    def check(answer: str) -> tuple[bool, str]:
        from .iac.suite import evaluate_answers

        result = evaluate_answers([{"kind": kind, "answer": answer}])["results"][0]
        parts, failed = [], False
        for name, verdict in result["verdicts"].items():
            failed = failed or verdict["status"] == "fail"
            why = [f["message"] for f in verdict["findings"][:2]] + list(verdict["unchecked"][:1])
            parts.append(f"{name}: {verdict['status']}" + (f" ({'; '.join(why)})" if why else ""))
        return not failed, " | ".join(parts)

    return check


VALIDATORS: dict[str, Validator] = {f"iac-{kind}": iac_validator(kind) for kind in KINDS}


def run_validators(names: tuple[str, ...] | list[str], answer: str) -> dict[str, dict]:
    """{validator name: {"passed": bool, "detail": str}} for one answer."""
    results = {}
    for name in names:
        passed, detail = VALIDATORS[name](answer)
        results[name] = {"passed": bool(passed), "detail": detail}
    return results
