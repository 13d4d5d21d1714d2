"""W4A16 quantization of a merged export, for serving (seed 001's "AWQ for inference, only after merge").

    python -m remote_payload.quantize --export MERGED --out DIR [--scheme w4a16] [--method auto|rtn|awq]
                                      [--group-size N] [--check-prompts N] [--force] [--json]

Runs in the quantizing venv (`python3 -m remote_payload.venvs install quantize`: llmcompressor 0.14 pins
transformers 5.15-5.17). autoawq is deprecated; llmcompressor's `oneshot` does both methods:
* `rtn` -- round-to-nearest `QuantizationModifier` (no data; seconds on a CPU), the method where no GPU exists;
* `awq` -- `AWQModifier`, activation-aware, calibrated on the evaluation prompts rendered in *both* styles
  (each calibration sample starts its user turn with <STYLE_TERSE> or <STYLE_VERBOSE>, so the scales see the
  activations the style rows produce). It needs a GPU: llmcompressor's calibration pipeline pins memory on an
  accelerator and fails on a CPU-only machine ("Cannot access accelerator device").
`auto` is awq on a GPU, rtn otherwise. Weights: 4-bit integers, asymmetric, grouped (W4A16_ASYM: group 128, or
the largest of 64/32 that divides every layer's input size for small models); lm_head and the embedding stay
in full precision, so the trained style rows are untouched (checked bit for bit).

Checks, recorded in export.json (kind "merged-w4a16"): only keys vLLM loads (a compressed-tensors config, no
peft names), the style rows equal the merged export's, and the answer lengths of the quantized model (loaded
by transformers through compressed-tensors) still separate the styles: VERBOSE/TERSE >= the recipe's gate.
Exit status: 0 quantized and checked, 1 a check failed, 2 bad input (not a merged export, awq without a GPU).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import InputError, PayloadError
from .export.record import NotAnExport, read_export, write_export

SCHEMES = ("w4a16",)
METHODS = ("auto", "rtn", "awq")
GROUP_SIZES = (128, 64, 32)


class QuantizeRefused(InputError):
    pass


class QuantizeCheckFailed(PayloadError):
    pass


def linear_in_features(model) -> list[int]:
    import torch

    return [m.in_features for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and not name.endswith("lm_head")]


def choose_group_size(in_features: list[int], requested: int | None) -> int:
    if requested:
        bad = sorted({f for f in in_features if f % requested})
        if bad:
            raise QuantizeRefused(f"--group-size {requested} does not divide the layer input sizes {bad}")
        return requested
    for size in GROUP_SIZES:
        if all(f % size == 0 for f in in_features):
            return size
    raise QuantizeRefused(f"no group size of {GROUP_SIZES} divides the layer input sizes {sorted(set(in_features))}")


def config_groups(group_size: int) -> dict[str, Any]:
    """W4A16_ASYM's weights (4-bit int, asymmetric, grouped) with an explicit group size."""
    return {"group_0": {"targets": ["Linear"], "weights": {"num_bits": 4, "type": "int", "symmetric": False,
                                                            "strategy": "group", "group_size": group_size}}}


def calibration_dataset(tokenizer, recipe, prompts: list[str]):
    """The prompts rendered by prompting.encode_prompt in both styles: each sample holds one style token."""
    from datasets import Dataset

    from .prompting import encode_prompt
    from .styles import STYLES

    rows = [encode_prompt(tokenizer, [{"role": "user", "content": q}], style, recipe.chat_template_kwargs)
            for q in prompts for style in STYLES]
    return Dataset.from_dict({"input_ids": rows, "attention_mask": [[1] * len(r) for r in rows]}), rows


def resolve_method(method: str) -> str:
    import torch

    gpu = torch.cuda.is_available()
    if method == "auto":
        return "awq" if gpu else "rtn"
    if method == "awq" and not gpu:
        raise QuantizeRefused("--method awq needs a GPU (llmcompressor's AWQ calibration pins memory on an "
                              "accelerator)", hint="use --method rtn (round-to-nearest) on a CPU-only machine")
    return method


def quantize(model, tokenizer, recipe, method: str, group_size: int, prompts: list[str]) -> dict[str, Any]:
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import QuantizationModifier

    groups = config_groups(group_size)
    if method == "rtn":
        oneshot(model=model, recipe=QuantizationModifier(ignore=["lm_head"], config_groups=groups))
        return {"calibration": None}
    from llmcompressor.modifiers.awq import AWQModifier

    dataset, rows = calibration_dataset(tokenizer, recipe, prompts)
    oneshot(model=model, dataset=dataset, recipe=AWQModifier(ignore=["lm_head"], config_groups=groups),
            max_seq_length=max(len(r) for r in rows), num_calibration_samples=len(rows))
    return {"calibration": {"samples": len(rows), "styles": ["TERSE", "VERBOSE"], "source": "evaluation prompts"}}


def style_rows_equal(source: Path, out: Path, ids: list[int]) -> dict[str, Any]:
    import torch

    from .export.source import base_weight_files, find_tensor, read_rows

    rows = []
    for directory in (source, out):
        files = base_weight_files(directory)
        name = find_tensor(files, "embed_tokens.weight")
        rows.append(read_rows(files[name], name, ids))
    equal = bool(torch.equal(rows[0], rows[1]))
    return {"ok": equal, "rows": ids, "problems": [] if equal else ["the style rows changed in quantization"]}


def separation_check(out: Path, tokenizer, recipe, prompts: list[str], merged: dict) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM

    from .export.checks import summarize, answer_lengths

    model = AutoModelForCausalLM.from_pretrained(str(out), device_map={"": "cuda" if torch.cuda.is_available()
                                                                         else "cpu"})
    model.eval()
    summary = summarize(answer_lengths(model, tokenizer, recipe, prompts))
    reference = merged.get("checks", {}).get("lengths", {}).get("export", {}).get("tokens", {})
    same = {s: sum(a == b for a, b in zip(summary["tokens"][s], reference.get(s, []))) for s in summary["tokens"]}
    ok = summary["ratio"] is not None and summary["ratio"] >= recipe.evaluation.gate
    return {"ok": ok, "gate": recipe.evaluation.gate, "prompts": len(prompts), "quantized": summary,
            "merged_mean_tokens": merged.get("checks", {}).get("lengths", {}).get("export", {}).get("mean_tokens"),
            "answers_of_equal_length_to_merged": same,
            "problems": [] if ok else [f"VERBOSE/TERSE ratio {summary['ratio']} is below the gate {recipe.evaluation.gate}"]}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .evaluate import DEFAULT_PROMPTS, load_prompts
    from .export.checks import merged_key_problems
    from .manifest import write_manifest
    from .recipes import recipe_from_dict
    from .runtime_env import apply_torch_threads

    source = Path(args.export)
    try:
        merged = read_export(source)
    except NotAnExport as exc:
        raise QuantizeRefused(str(exc)) from None
    if merged["kind"] != "merged":
        raise QuantizeRefused(f"{source} is a {merged['kind']} export; W4A16 quantizes a merged model",
                              hint="export with --format merged first")
    method = resolve_method(args.method)
    out = Path(args.out)
    if out.exists() and not args.force:
        raise QuantizeRefused(f"{out} already exists", hint="pass --force to replace it")
    recipe = recipe_from_dict(merged["recipe"])
    apply_torch_threads(recipe.torch_threads)
    prompts = load_prompts(DEFAULT_PROMPTS)
    prompts = prompts[:args.check_prompts] if args.check_prompts else prompts
    started = time.monotonic()
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    model = AutoModelForCausalLM.from_pretrained(str(source), dtype="auto")
    group_size = choose_group_size(linear_in_features(model), args.group_size)
    facts = quantize(model, tokenizer, recipe, method, group_size, prompts)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(str(partial), save_compressed=True)
    tokenizer.save_pretrained(str(partial))
    shutil.copy2(source / "payload_meta.json", partial / "payload_meta.json")
    del model
    ids = [merged["style_tokens"]["terse_id"], merged["style_tokens"]["verbose_id"]]
    problems = merged_key_problems(partial, allow_quantization="compressed-tensors")
    checks = {"vllm_keys": {"ok": not problems, "problems": problems},
              "style_rows": style_rows_equal(source, partial, ids),
              "lengths": separation_check(partial, tokenizer, recipe, prompts, merged)}
    record = {key: merged[key] for key in ("served_name", "base_model", "style_tokens", "recipe", "source")}
    record.update(kind="merged-w4a16", lora=None, dtype=merged["dtype"], checks=checks,
                  quantization={"scheme": "W4A16_ASYM", "method": method, "group_size": group_size,
                                "from_export": str(source.resolve()), **facts},
                  seconds=round(time.monotonic() - started, 2), created_at=datetime.now(timezone.utc).isoformat())
    write_export(partial, record)
    write_manifest(partial)
    failed = [name for name, check in checks.items() if not check["ok"]]
    if failed:
        raise QuantizeCheckFailed(f"the W4A16 export failed its {', '.join(failed)} check(s): " +
                                  "; ".join(p for n in failed for p in checks[n]["problems"][:3]),
                                  hint=f"inspect {partial}/export.json")
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    return {"format": 1, **record, "out": str(out)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m remote_payload.quantize", description=__doc__.split("\n")[0])
    parser.add_argument("--export", required=True, help="a merged export (python -m remote_payload.export "
                                                        "--format merged)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--scheme", default="w4a16", choices=SCHEMES)
    parser.add_argument("--method", default="auto", choices=METHODS)
    parser.add_argument("--group-size", type=int, help="weights per scale (default 128, smaller for tiny models)")
    parser.add_argument("--check-prompts", type=int, default=0, metavar="N", help="prompts for the check (0 = all)")
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from .runtime_env import apply_runtime_env

    apply_runtime_env()
    try:
        record = run(args)
    except PayloadError as exc:
        print(f"quantize: {exc}", file=sys.stderr)
        return exc.exit_code
    lengths = record["checks"]["lengths"]["quantized"]
    print(json.dumps(record, indent=2) if args.json else
          f"quantized {args.export} -> {record['out']} (W4A16, {record['quantization']['method']}, group "
          f"{record['quantization']['group_size']}); TERSE {lengths['mean_tokens']['TERSE']} / VERBOSE "
          f"{lengths['mean_tokens']['VERBOSE']} mean tokens, ratio {lengths['ratio']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
