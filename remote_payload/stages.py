"""Stage 2: a run that continues from a parent adapter (seed 001: "load Stage-1 LoRA and continue training").

`train --init-adapter DIR [--parent JSON]` loads the parent adapter *trainable* on the 4-bit base
(`PeftModel.from_pretrained(..., is_trainable=True)`), so its LoRA weights and its trained style rows (peft's
trainable tokens) are where training starts, and the run saves one adapter that carries both stages. The
parent's LoRA shape (r, alpha, targets) is the parent's: the stage-2 recipe's LoRA fields do not apply and a
difference is reported. The run records its parent in run.json "parent" and in the adapter's payload_meta.json
("parent" and "lineage": the parent's own lineage, then the parent), so a fetched adapter says what it grew from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import InputError, ModelError

WEIGHTS_FILE = "adapter_model.safetensors"
LORA_FIELDS = ("lora_r", "lora_alpha", "lora_target_modules")


def parent_info(adapter_dir: str | Path, given: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a run records of its parent: run id, job, source (from the controller), the adapter's sha256 (of
    its weights file) and manifest sha256, task, recipe name and LoRA shape, and the parent's own lineage.
    The parent's files are checked against its manifest first."""
    from .manifest import MANIFEST, verify_manifest
    from .modeling import file_sha256, read_adapter_meta

    path = Path(adapter_dir)
    if not (path / MANIFEST).is_file() or not (path / WEIGHTS_FILE).is_file():
        raise InputError(f"--init-adapter {path}: not an adapter a run wrote ({MANIFEST} or {WEIGHTS_FILE} missing)",
                         hint="point init_from at a succeeded run, or at an adapter/ folder with its manifest")
    # an adapter synced from S3 also holds the sync's own bookkeeping (.orch-weights.json/.lock): not the adapter's
    problems = [p for p in verify_manifest(path) if not p.startswith("unlisted .orch-")]
    if problems:
        raise InputError(f"--init-adapter {path} does not match its manifest: {'; '.join(problems[:5])}",
                         hint="fetch or sync the parent adapter again")
    meta = read_adapter_meta(path)
    recipe = meta.get("recipe") or {}
    own = {"run_id": None, "job": None, "source": str(path), **(given or {})}
    return {**own, "adapter_dir": str(path), "adapter_sha256": file_sha256(path / WEIGHTS_FILE),
            "manifest_sha256": file_sha256(path / MANIFEST), "task": meta.get("task"),
            "recipe": recipe.get("name"), "lora": {k: recipe.get(k) for k in LORA_FIELDS},
            "style_tokens": meta.get("style_tokens"), "base_model": meta.get("base_model"),
            "lineage": list(meta.get("lineage") or [])}


def check_parent(parent: dict[str, Any], recipe, style, model_dir: str | Path) -> list[str]:
    """Refuse a parent trained on another base or with other style tokens; return notes (LoRA shape kept)."""
    from .modeling import file_sha256

    base = parent.get("base_model") or {}
    here = file_sha256(Path(model_dir) / "config.json")
    if base.get("config_sha256") and base["config_sha256"] != here:
        raise ModelError(f"parent adapter {parent['adapter_dir']} was trained on another base model "
                         f"(config.json sha256 {base['config_sha256'][:12]}, this one {here[:12]})",
                         hint="stage 2 must use the same base weights as its parent (the job's weights:)")
    stored = parent.get("style_tokens")
    if bool(stored) != (style is not None):
        has = "has" if stored else "has no"
        raise InputError(f"parent adapter {parent['adapter_dir']} {has} style tokens, but recipe "
                         f"'{recipe.name}' (task {recipe.task}) {'uses' if style else 'does not use'} them",
                         hint="continue a verbosity adapter with a verbosity-task recipe (e.g. qwen3-14b-iac)")
    if stored and [stored["terse_id"], stored["verbose_id"]] != style.ids:
        raise ModelError(f"parent adapter's style token ids {stored['terse_id']},{stored['verbose_id']} differ "
                         f"from this base's {style.ids}", hint="use the base model the parent was trained on")
    notes = []
    for name in LORA_FIELDS:
        mine = getattr(recipe, name)
        theirs = parent["lora"].get(name)
        if theirs is not None and (list(mine) if isinstance(mine, tuple) else mine) != theirs:
            notes.append(f"{name}: the parent's {theirs!r} is kept (recipe says {mine!r})")
    return notes


def attach_parent(model, recipe, style, adapter_dir: str | Path):
    """The base prepared as `modeling.attach_lora` does, then the parent adapter loaded trainable."""
    from peft import PeftModel, prepare_model_for_kbit_training

    from .styles import resize_for_style_tokens

    if style is not None and style.needs_resize:
        resize_for_style_tokens(model, style.required_rows)
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=True)


def read_parent_arg(text: str | None) -> dict[str, Any]:
    """--parent: the controller's JSON {run_id, job, source}."""
    if not text:
        return {}
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"--parent must be a JSON object: {exc.msg}") from None
    if not isinstance(doc, dict):
        raise InputError("--parent must be a JSON object like {\"run_id\": ..., \"job\": ...}")
    return {k: doc.get(k) for k in ("run_id", "job", "source")}


def lineage_of(parent: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The adapter's lineage: the parent's own, then the parent (without its nested lineage)."""
    if not parent:
        return []
    entry = {k: parent.get(k) for k in ("run_id", "job", "source", "adapter_sha256", "recipe", "task")}
    return [*parent.get("lineage", []), entry]
