"""Sequence-length analysis of a job's dataset (seed 003's check_seq_len), with the tokenizer only.

    python -m remote_payload.seqlen --job BUNDLE/job.json --model-dir DIR [--cutoff N] [--show-examples N] [--json]

Every example is rendered and tokenized exactly as training does (style token, chat template, -100 mask), without
truncation. Reported: token-length percentiles of whole examples, of the masked prompt part and of the trained
answer part; masked/trained token totals; how many examples a cutoff (default: the recipe's max_length) would
leave out; a suggested max_length (~1.15 x p95, as seed 003 advises 1.1-1.2 x p95, rounded up to 64).
Exit status: 0 done, 2 bad input (job, recipe, dataset).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from .errors import InputError, PayloadError
from .features import Feature, encode_example, length_stats

PERCENTILES = (50, 90, 95, 99, 100)


def analyze(features: list[Feature], cutoff: int, percentiles=PERCENTILES) -> dict[str, Any]:
    totals = [len(f.input_ids) for f in features]
    over = [(f.source, len(f.input_ids)) for f in features if len(f.input_ids) > cutoff]
    stats = length_stats(totals, percentiles)
    return {
        "examples": len(features), "cutoff": cutoff, "percentiles": list(percentiles),
        "total_tokens": stats,
        "prompt_tokens": length_stats([f.prompt_tokens for f in features], percentiles),
        "completion_tokens": length_stats([f.completion_tokens for f in features], percentiles),
        "masked_tokens": sum(f.prompt_tokens for f in features),
        "trained_tokens": sum(f.completion_tokens for f in features),
        "over_cutoff": len(over), "over_cutoff_percent": round(100 * len(over) / len(features), 2),
        "over_cutoff_examples": [f"{s} ({n} tokens)" for s, n in over[:20]],
        "suggested_max_length": int(math.ceil(stats["p95"] * 1.15 / 64) * 64) if "p95" in stats else None,
    }


def describe_example(tokenizer, feature: Feature, cutoff: int) -> str:
    text = tokenizer.decode(feature.input_ids)
    fits = "fits" if len(feature.input_ids) <= cutoff else f"LONGER than cutoff {cutoff}: left out of training"
    return "\n".join([
        f"--- {feature.source} ({feature.style})",
        text,
        f"[tokens] total {len(feature.input_ids)} ({fits}); masked prompt {feature.prompt_tokens}, "
        f"trained answer {feature.completion_tokens} "
        f"({100 * feature.prompt_tokens / len(feature.input_ids):.1f}% masked)"])


def format_report(report: dict[str, Any]) -> str:
    lines = [f"examples: {report['examples']}   cutoff: {report['cutoff']}",
             f"{'':<18}" + "".join(f"{k:>9}" for k in ["min", "mean", *[f"p{p}" for p in report['percentiles']]])]
    for part in ("total_tokens", "prompt_tokens", "completion_tokens"):
        s = report[part]
        values = [s["min"], s["mean"], *[s[f"p{p}"] for p in report["percentiles"]]]
        lines.append(f"{part:<18}" + "".join(f"{v:>9.1f}" for v in values))
    lines.append(f"masked (-100) tokens: {report['masked_tokens']}   trained tokens: {report['trained_tokens']}")
    lines.append(f"over cutoff: {report['over_cutoff']} ({report['over_cutoff_percent']}%)"
                 + (f": {', '.join(report['over_cutoff_examples'])}" if report["over_cutoff"] else ""))
    lines.append(f"suggested max_length (~1.15 x p95): {report['suggested_max_length']}")
    return "\n".join(lines)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m remote_payload.seqlen", description=__doc__.split("\n")[0])
    parser.add_argument("--job", required=True, help="job.json of the extracted bundle")
    parser.add_argument("--model-dir", required=True, help="model directory (only its tokenizer is read)")
    parser.add_argument("--cutoff", type=int, default=None, help="length to test (default: recipe max_length)")
    parser.add_argument("--show-examples", type=int, default=0, metavar="N", help="print N rendered examples")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from .runtime_env import apply_runtime_env

    apply_runtime_env()
    try:
        from .dataset import load_dataset
        from .job import read_job
        from .modeling import prepare_tokenizer

        job = read_job(args.job)
        recipe = job.recipe()
        cutoff = recipe.max_length if args.cutoff is None else args.cutoff
        if cutoff < 1:
            raise InputError(f"--cutoff must be >= 1 (got {cutoff})")
        dataset = load_dataset(job.dataset)
        tokenizer, _ = prepare_tokenizer(args.model_dir)
        features = [encode_example(tokenizer, e, recipe.chat_template_kwargs) for e in dataset.examples]
    except PayloadError as exc:
        print(f"seqlen: {exc}", file=sys.stderr)
        return exc.exit_code
    report = {"dataset": str(job.dataset), "recipe": recipe.name, **analyze(features, cutoff)}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for feature in features[: args.show_examples]:
        print(describe_example(tokenizer, feature, cutoff))
    print(format_report(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
