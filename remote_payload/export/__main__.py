"""Export a training adapter into a form vLLM serves (runs in the training venv, where the base weights are).

    python -m remote_payload.export --model-dir BASE --adapter RUN/adapter --out DIR --format lora|merged
                                    [--name NAME] [--dtype auto|bfloat16|float16|float32]
                                    [--method auto|peft|shards] [--device auto|cpu|cuda]
                                    [--check-load auto|full|4bit] [--check-prompts N] [--prompts FILE]
                                    [--force] [--json]

`lora` (where possible): the LoRA weights plus the two style rows rewritten as an embedding LoRA, served by
vLLM on the unchanged base (`--enable-lora --lora-modules NAME=DIR`). `merged`: the adapter merged into a
full-precision copy of the base (see merge.py for peft vs shard-by-shard). Both copy the tokenizer holding
the style tokens (vLLM's `--tokenizer` must point at it) and payload_meta.json, end with the vllm_keys and
lengths checks (checks.py), and write export.json and a sha256 manifest.json. The directory is built as
DIR.partial and renamed to DIR only when every check passed; a failed check leaves DIR.partial for inspection.

Exit status: 0 exported and checked; 1 a check failed (or the export crashed); 2 bad input or an impossible
export (e.g. `--format lora` for Mistral), with the reason and what to use instead on stderr.
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

from ..errors import PayloadError
from .source import ExportRefused

FORMATS = ("lora", "merged")


class ExportCheckFailed(PayloadError):
    """The export was written but one of its checks failed (exit 1)."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from .merge import DTYPES, METHODS

    parser = argparse.ArgumentParser(prog="python -m remote_payload.export", description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", required=True, help="base model directory the adapter was trained on")
    parser.add_argument("--adapter", required=True, help="the training run's adapter directory (RUN/adapter)")
    parser.add_argument("--out", required=True, help="export directory to create")
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--name", help="name vLLM serves it under (default: the run directory's name)")
    parser.add_argument("--dtype", default="auto", choices=DTYPES, help="merged weights' dtype (auto: the base's)")
    parser.add_argument("--method", default="auto", choices=METHODS, help="merge in memory or shard by shard")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="where the merge and the checks run (auto: the GPU when the model fits)")
    parser.add_argument("--check-load", default="auto", choices=("auto", "full", "4bit"),
                        help="how the lengths check loads the base: full precision, or (lora) 4-bit as trained; "
                             "auto: 4-bit for a lora export whose full-precision base does not fit the GPU")
    parser.add_argument("--check-prompts", type=int, default=0, metavar="N",
                        help="evaluation prompts for the lengths check (default 0 = all of them)")
    parser.add_argument("--prompts", help="JSONL of {\"prompt\": ...} (default: the payload's 25 eval prompts)")
    parser.add_argument("--force", action="store_true", help="replace an existing export directory")
    parser.add_argument("--json", action="store_true", help="print export.json on stdout")
    return parser.parse_args(argv)


class Steps:
    def __init__(self):
        self.seconds: dict[str, float] = {}

    def run(self, name: str, fn, *args, **kwargs):
        print(f"== {name}", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        try:
            return fn(*args, **kwargs)
        finally:
            self.seconds[name] = round(time.monotonic() - t0, 2)


def default_name(adapter: Path) -> str:
    run = adapter.resolve().parent.name if adapter.name == "adapter" else adapter.name
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in run) or "model"


def prepare_out(out: Path, force: bool) -> Path:
    if out.exists() and not force:
        raise ExportRefused(f"{out} already exists", hint="pass --force to replace it, or choose another --out")
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    return partial


def export(args: argparse.Namespace, steps: Steps) -> dict[str, Any]:
    from ..evaluate import DEFAULT_PROMPTS, load_prompts
    from ..manifest import write_manifest
    from .checks import lengths_check, vllm_keys_check
    from .embedding_lora import check_lora_possible, write_lora
    from .merge import choose_placement, resolve_dtype, write_merged
    from .record import write_export
    from .source import copy_tokenizer, load_source

    source = steps.run("read adapter and base", load_source, args.model_dir, args.adapter)
    if args.format == "lora":
        check_lora_possible(source)
    prompts = load_prompts(args.prompts or DEFAULT_PROMPTS)
    if args.check_prompts < 0:
        raise ExportRefused(f"--check-prompts must be >= 0 (got {args.check_prompts})")
    prompts = prompts[:args.check_prompts] if args.check_prompts else prompts
    out = Path(args.out)
    partial = prepare_out(out, args.force)
    record: dict[str, Any] = {"kind": args.format, "served_name": args.name or default_name(Path(args.adapter)),
                              "source": source.describe(), "style_tokens": source.style,
                              "recipe": source.meta["recipe"], "base_model": {
                                  **source.meta.get("base_model", {}), "architecture": source.architecture,
                                  "vocab_size": source.base_vocab}}
    checks: dict[str, Any] = {}
    if args.format == "lora":
        record["lora"] = steps.run("write embedding LoRA", write_lora, source, partial)
    else:
        merged = steps.run("merge", write_merged, source, partial, args.dtype, args.method, args.device)
        checks["merged_rows"] = merged.pop("rows_check")
        record["lora"], record["merge"] = None, merged
    dtype = resolve_dtype(source, args.dtype)
    placement = choose_placement(source, dtype, "peft", args.device)   # the checks load whole models
    device, load = placement["device"], args.check_load
    if load == "auto":
        gpu_too_small = placement["free_vram_bytes"] > 0 and device == "cpu"
        load = "4bit" if args.format == "lora" and gpu_too_small else "full"
    if load == "4bit" and args.format != "lora":
        raise ExportRefused("--check-load 4bit applies to --format lora", hint="a merged model is checked as written")
    record["dtype"] = dtype
    copy_tokenizer(source, partial)
    shutil.copy2(source.adapter_dir / "payload_meta.json", partial / "payload_meta.json")
    checks["vllm_keys"] = steps.run("check keys vLLM accepts", vllm_keys_check, args.format, partial,
                                    source.base_vocab)
    checks["lengths"] = steps.run("check answer lengths against the adapter", lengths_check, source, args.format,
                                  partial, dtype, "cuda" if load == "4bit" and placement["free_vram_bytes"] else
                                  device, prompts, load)
    record.update(checks=checks, seconds=steps.seconds, created_at=datetime.now(timezone.utc).isoformat())
    write_export(partial, record)
    write_manifest(partial)
    failed = [name for name, check in checks.items() if not check["ok"]]
    if failed:
        problems = [p for name in failed for p in checks[name]["problems"]][:5]
        raise ExportCheckFailed(f"the export failed its {', '.join(failed)} check(s): " + "; ".join(problems),
                                hint=f"inspect {partial}/export.json; the export was not renamed to {out}")
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    return {"format": 1, **record, "out": str(out)}


def summary(record: dict[str, Any]) -> str:
    lengths = record["checks"]["lengths"]
    means = lengths["export"]["mean_tokens"]
    return (f"exported {record['kind']} to {record['out']} (served as {record['served_name']!r}); "
            f"TERSE {means['TERSE']} / VERBOSE {means['VERBOSE']} mean tokens over {lengths['prompts']} prompts "
            f"({lengths['criterion']} as the adapter); checks passed: {', '.join(record['checks'])}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from ..runtime_env import apply_runtime_env, quiet_known_warnings

    apply_runtime_env()
    quiet_known_warnings()
    try:
        record = export(args, Steps())
    except PayloadError as exc:
        print(f"export: {exc}", file=sys.stderr)
        return exc.exit_code
    print(json.dumps(record, indent=2) if args.json else summary(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
