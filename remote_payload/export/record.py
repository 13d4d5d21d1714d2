"""`export.json`: what an export directory holds and how vLLM serves it. Stdlib only.

Written last by `python -m remote_payload.export` (and by `remote_payload.quantize`), read by the serving code
(`remote_payload.serve.command`), which runs with the serving venv or the system python3. An export directory
without it is not an export: a raw training adapter (`RUN/adapter/`) is recognised and refused with the reason.

    {"format": 1, "kind": "lora" | "merged" | "merged-w4a16",
     "served_name": "demo",                     # the name vLLM lists in /v1/models and requests use
     "base_model": {"dir_name": ..., "config_sha256": ..., "architecture": ..., "vocab_size": N},
     "lora": {"max_rank": 16} | null,           # lora only: what --max-lora-rank must be at least
     "dtype": "float32", "style_tokens": {...}, "recipe": {...} (for chat_template_kwargs, presets),
     "checks": {"vllm_keys": {...}, "lengths": {...}, ...}, "created_at": ..., "source": {...}}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EXPORT_FILE = "export.json"
EXPORT_FORMAT = 1
KINDS = ("lora", "merged", "merged-w4a16")
HOW_TO_EXPORT = ("export it first: python -m remote_payload.export --model-dir BASE --adapter RUN/adapter "
                 "--out EXPORT --format lora|merged (orch export)")


class NotAnExport(Exception):
    """The directory is not a servable export; the message says what it is and what to do."""


def raw_adapter_reason(directory: Path) -> str | None:
    """Why a peft adapter directory cannot be handed to vLLM as it is, or None when nothing stands in the way."""
    config_path = directory / "adapter_config.json"
    if not config_path.is_file():
        return None
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"{config_path} is unreadable ({exc})"
    reasons = []
    if config.get("trainable_token_indices"):
        reasons.append("it trains token rows with peft's trainable_token_indices (saved as trainable_tokens_delta)")
    if config.get("modules_to_save"):
        reasons.append(f"it saves full modules {config['modules_to_save']} (modules_to_save)")
    if not reasons:
        return None
    return ("vLLM refuses this adapter: " + " and ".join(reasons) +
            "; vLLM has no extra-vocabulary LoRA, so the style rows must become an embedding LoRA or be merged")


def read_export(directory: str | Path) -> dict[str, Any]:
    """The export record of `directory`; NotAnExport naming the problem and the fix otherwise."""
    path = Path(directory)
    if not path.is_dir():
        raise NotAnExport(f"{path} is not a directory")
    record_path = path / EXPORT_FILE
    if not record_path.is_file():
        reason = raw_adapter_reason(path)
        if reason:
            raise NotAnExport(f"{path} is a training adapter, not an export: {reason}. {HOW_TO_EXPORT}")
        if (path / "adapter_config.json").is_file() or (path / "config.json").is_file():
            raise NotAnExport(f"{path} has no {EXPORT_FILE}: it was not written by remote_payload.export, so "
                              f"nothing says it passed the vLLM checks. {HOW_TO_EXPORT}")
        raise NotAnExport(f"{path} holds neither an export nor an adapter ({EXPORT_FILE} missing)")
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise NotAnExport(f"{record_path} is unreadable: {exc}") from None
    if not isinstance(record, dict) or record.get("format") != EXPORT_FORMAT:
        raise NotAnExport(f"{record_path}: unsupported format {record.get('format') if isinstance(record, dict) else None!r}"
                          f" (this payload reads {EXPORT_FORMAT})")
    if record.get("kind") not in KINDS:
        raise NotAnExport(f"{record_path}: unknown kind {record.get('kind')!r} (known: {', '.join(KINDS)})")
    failed = [name for name, check in (record.get("checks") or {}).items()
              if isinstance(check, dict) and check.get("ok") is False]
    if failed:
        raise NotAnExport(f"{path}: the export failed its {', '.join(failed)} check(s); re-export before serving")
    return record


def write_export(directory: Path, record: dict[str, Any]) -> Path:
    target = directory / EXPORT_FILE
    target.write_text(json.dumps({"format": EXPORT_FORMAT, **record}, indent=2, sort_keys=True) + "\n",
                      encoding="utf-8")
    return target
