"""IaC validators: extract code from model answers by kind, validate it with the real tools offline, judge
seed 001's gates. Stdlib only; the tools themselves run as subprocesses from their own venv (install.py).

    from remote_payload.iac import evaluate_answers
    report = evaluate_answers([{"prompt": p, "kind": "terraform", "answer": a}, ...])   # JSON-ready dict
    report["ok"], report["gates"], report["kinds"]["terraform"]["validators"]

See remote_payload/iac/README.md for the report's shape and what cannot be checked offline.
"""

from __future__ import annotations


def evaluate_answers(items, **options):
    from .suite import evaluate_answers as run

    return run(items, **options)


def check_paths(paths, kind=None, **options):
    from .suite import check_paths as run

    return run(paths, kind, **options)
