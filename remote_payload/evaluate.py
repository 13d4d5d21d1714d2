"""Evaluate a trained adapter the way its recipe's task says.

    python -m remote_payload.evaluate --model-dir DIR --adapter RUN/adapter --out RUN/eval.json [--gate G] [--json]
        verbosity:                [--prompts FILE]
        classification/generation: [--data FILE | --job BUNDLE/job.json] [--samples N] [--compare-base]

* verbosity (`verbosity.py`): the 25 held-out questions in both styles; gate: VERBOSE/TERSE mean-token ratio.
* classification (`classify.py`): greedy answers to labelled examples (either training or MovieLens test
  format) read by `answers.extract_answer`: accuracy, F1, precision, recall, confusion matrix, unparseable
  answers, forced-choice accuracy, every answer; gate: the section's gate_metric >= gate. `--compare-base`
  answers the same samples with the adapter switched off and lists where the two disagree (seed 003's
  compare_base_vs_lora / analyze_differences).
* generation (`generation.py`): greedy answers checked by the recipe's validators.

The examples come from `--data FILE`, else the `eval_dataset` of `--job`'s job.json; `--samples N` takes the
first N (training-time evaluation scores the first `evaluation.samples`, so the same N gives the same samples).
`--gate` replaces the recipe's gate for this evaluation. The report is written to --out and printed as a table,
or as JSON with --json. Exit status: 0 gate passed, 1 gate failed or the evaluation failed, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from .errors import InputError, PayloadError
from .verbosity import (DEFAULT_PROMPTS, format_table, generate_answers, load_prompts,  # noqa: F401
                        prompt_batch, run_evaluation)


def evaluate_task(model, tokenizer, recipe, examples=None, gate: float | None = None, compare_base: bool = False,
                  prompts_file: str | Path = DEFAULT_PROMPTS) -> tuple[dict[str, Any] | None, str]:
    """(report, text table) of an already loaded model + adapter; (None, why) when there is nothing to score."""
    if recipe.task == "verbosity":
        report = run_evaluation(model, tokenizer, recipe, load_prompts(prompts_file), gate)
        return report, format_table(report)
    if not examples:
        return None, "no evaluation examples (give the job an eval_dataset, or pass --data FILE)"
    if recipe.task == "classification":
        from .classify import classification_report, format_report

        report = classification_report(model, tokenizer, recipe, examples, compare_base, gate)
        return report, format_report(report)
    from .generation import format_report, generation_report

    report = generation_report(model, tokenizer, recipe, examples)
    return report, format_report(report)


def report_summary(report: dict[str, Any]) -> dict[str, Any]:
    """What run.json keeps of an evaluation report."""
    if report.get("task") == "classification":
        return {"task": "classification", "samples": report["samples"], "passed": report["passed"],
                "gate": report["gate"], **{k: report["metrics"][k] for k in
                                           ("accuracy", "f1", "precision", "recall", "unparseable")}}
    if report.get("task") == "generation":
        return {k: report[k] for k in ("task", "samples", "mean_tokens", "pass_rate", "passed")}
    return {key: report[key] for key in ("ratio", "passed", "gate", "prompts")} | {
        "mean_tokens": {s: v["mean_tokens"] for s, v in report["styles"].items()}}


def write_report(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def parse_args(argv: list[str] | None):
    parser = argparse.ArgumentParser(prog="python -m remote_payload.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", required=True, help="base model directory (as used for training)")
    parser.add_argument("--adapter", required=True, help="adapter directory written by training (RUN/adapter)")
    parser.add_argument("--out", required=True, help="where to write the JSON report (RUN/eval.json)")
    parser.add_argument("--gate", type=float, default=None, help="replace the recipe's evaluation.gate")
    parser.add_argument("--prompts", default=str(DEFAULT_PROMPTS), help="verbosity: JSONL of {\"prompt\": ...}")
    parser.add_argument("--data", default=None, help="classification/generation: JSONL of labelled examples")
    parser.add_argument("--job", default=None, help="job.json whose eval_dataset to use when --data is not given")
    parser.add_argument("--samples", type=int, default=None, metavar="N", help="score only the first N examples")
    parser.add_argument("--compare-base", action="store_true",
                        help="classification: also answer with the adapter off and list disagreements")
    parser.add_argument("--json", action="store_true", help="print the JSON report on stdout instead of a table")
    return parser.parse_args(argv)


def load_examples(args, recipe) -> list | None:
    """The examples to score, checked for the recipe's task (None for verbosity)."""
    if recipe.task == "verbosity":
        if args.compare_base or args.data or args.samples:
            raise InputError("--data, --samples and --compare-base are for classification/generation adapters; "
                             "a verbosity adapter is scored on --prompts")
        return None
    from .dataset import DataSpec, load_dataset
    from .job import read_job

    path = args.data or (read_job(args.job).eval_dataset if args.job else None)
    if not path:
        raise InputError(f"a {recipe.task} adapter needs examples to score",
                         hint="pass --data FILE, or --job BUNDLE/job.json of a job with an eval_dataset")
    examples = load_dataset(path, DataSpec.from_recipe(recipe)).examples
    if args.samples is not None:
        if args.samples < 1:
            raise InputError(f"--samples must be >= 1 (got {args.samples})")
        examples = examples[: args.samples]
    return examples


def check_gate(recipe, gate: float | None) -> None:
    if gate is None:
        return
    if recipe.task == "verbosity" and gate <= 0:
        raise InputError(f"--gate must be > 0 (got {gate})")
    if recipe.task != "verbosity" and not 0 <= gate <= 1:
        raise InputError(f"--gate must be in [0, 1] for a {recipe.task} adapter (got {gate}): it is a minimum "
                         f"{getattr(recipe.evaluation, 'gate_metric', 'pass rate')}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from .runtime_env import apply_runtime_env, quiet_known_warnings

    apply_runtime_env()
    quiet_known_warnings()
    try:
        from .job import read_job
        from .modeling import load_for_inference, read_adapter_meta
        from .recipes import recipe_from_dict

        recipe = recipe_from_dict(read_adapter_meta(args.adapter)["recipe"])
        check_gate(recipe, args.gate)
        examples = load_examples(args, recipe)
        if recipe.task == "verbosity":
            load_prompts(args.prompts)  # bad prompt files are refused before the model loads
        model, tokenizer, recipe, _ = load_for_inference(args.model_dir, args.adapter)
        report, text = evaluate_task(model, tokenizer, recipe, examples, args.gate, args.compare_base, args.prompts)
    except PayloadError as exc:
        print(f"evaluate: {exc}", file=sys.stderr)
        return exc.exit_code
    report.update(model_dir=str(args.model_dir), adapter=str(args.adapter))
    if recipe.task == "verbosity":
        report["prompts_file"] = str(args.prompts)
    else:
        report["data_file"] = str(args.data or read_job(args.job).eval_dataset)
    write_report(Path(args.out), report)
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else text)
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
