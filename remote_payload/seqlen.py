"""Sequence-length analysis of a job's dataset (seed 003's check_seq_len), with the tokenizer only.

    python -m remote_payload.seqlen --job BUNDLE/job.json --model-dir DIR [--cutoff N] [--show-examples N]
                                    [--max-samples N] [--eval] [--json]

Every example is rendered and tokenized exactly as training does (the task's checks, style token for
verbosity, system prompt, chat template, -100 mask), without truncation. Reported: token-length percentiles of
whole examples, of the masked prompt part and of the trained answer part; masked/trained token totals; how many
examples a cutoff (default: the recipe's max_length) would leave out; a suggested max_length (~1.15 x p95, as
seed 003 advises 1.1-1.2 x p95, rounded up to 64). `--show-examples N` walks the first N examples through seed
003's steps: the JSON record, the chat messages, the rendered template, the token ids, the cutoff, the masking.
`--eval` analyses the job's eval_dataset instead; `--max-samples N` only the first N examples.
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


def walk_through(tokenizer, feature: Feature, example, dataset_path, cutoff: int) -> dict[str, Any]:
    """Seed 003's JSON -> messages -> template -> tokens -> cutoff -> masking steps for one example."""
    from .dataset import raw_record

    ids = feature.input_ids
    return {"source": feature.source, "record": raw_record(dataset_path, int(feature.source.rsplit(":", 1)[1])),
            "messages": [*example.messages, {"role": "assistant", "content": example.completion}],
            "rendered": tokenizer.decode(ids), "tokens": len(ids), "first_ids": ids[:20], "last_ids": ids[-20:],
            "fits": len(ids) <= cutoff, "masked": feature.prompt_tokens, "trained": feature.completion_tokens,
            "what": feature.style or (f"label {feature.label}" if feature.label else "answer")}


def describe_example(walk: dict[str, Any], cutoff: int) -> str:
    ids = walk["tokens"]
    fits = "fits" if walk["fits"] else f"LONGER than cutoff {cutoff}: left out of training"
    shown = [f"  {m['role']}: {' '.join(m['content'].split())[:160]}" for m in walk["messages"]]
    return "\n".join([
        f"--- {walk['source']} ({walk['what']})",
        walk["rendered"],
        f"[tokens] total {ids} ({fits}); masked prompt {walk['masked']}, trained answer {walk['trained']} "
        f"({100 * walk['masked'] / ids:.1f}% masked)",
        f"[record] {json.dumps(walk['record'], ensure_ascii=False)[:400]}",
        "[messages]", *shown,
        f"[ids] first 20 {walk['first_ids']}", f"[ids] last 20 {walk['last_ids']}"])


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
    parser.add_argument("--show-examples", type=int, default=0, metavar="N", help="walk N examples through")
    parser.add_argument("--max-samples", type=int, default=None, metavar="N", help="analyse the first N only")
    parser.add_argument("--eval", action="store_true", help="analyse the job's eval_dataset")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from .runtime_env import apply_runtime_env

    apply_runtime_env()
    try:
        job, recipe, path, examples, cutoff = _inputs(args)
        from .modeling import prepare_tokenizer

        tokenizer, _ = prepare_tokenizer(args.model_dir, recipe.uses_style_tokens)
        features = [encode_example(tokenizer, e, recipe.chat_template_kwargs) for e in examples]
    except PayloadError as exc:
        print(f"seqlen: {exc}", file=sys.stderr)
        return exc.exit_code
    report = {"dataset": str(path), "recipe": recipe.name, "task": recipe.task, **analyze(features, cutoff)}
    walks = [walk_through(tokenizer, f, e, path, cutoff) for f, e in zip(features, examples[: args.show_examples])]
    if args.json:
        print(json.dumps({**report, "walk_through": walks} if walks else report, indent=2, ensure_ascii=False))
        return 0
    for walk in walks:
        print(describe_example(walk, cutoff))
    print(format_report(report))
    return 0


def _inputs(args):
    """(job, recipe, dataset path, examples, cutoff), checked for the recipe's task."""
    from .dataset import DataSpec, load_dataset
    from .job import read_job

    job = read_job(args.job)
    recipe = job.recipe()
    cutoff = recipe.max_length if args.cutoff is None else args.cutoff
    if cutoff < 1:
        raise InputError(f"--cutoff must be >= 1 (got {cutoff})")
    if args.max_samples is not None and args.max_samples < 1:
        raise InputError(f"--max-samples must be >= 1 (got {args.max_samples})")
    path = job.eval_dataset if args.eval else job.dataset
    if path is None:
        raise InputError("--eval: the job has no eval_dataset")
    examples = load_dataset(path, DataSpec.from_recipe(recipe)).examples[: args.max_samples]
    return job, recipe, path, examples, cutoff


if __name__ == "__main__":
    raise SystemExit(main())
