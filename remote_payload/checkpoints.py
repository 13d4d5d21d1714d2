"""Finding the checkpoint to resume from in RUN/checkpoints/.

The Trainer writes checkpoint-N/ file by file and `trainer_state.json` last, so a process killed while saving
leaves a directory without a readable trainer_state.json (or without its optimizer state). Such directories are
skipped -- and removed, since training will write that step again -- so a resume never loads half a checkpoint.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

REQUIRED = ("trainer_state.json", "optimizer.pt", "scheduler.pt", "adapter_config.json")
_NAME = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_step(path: Path) -> int | None:
    match = _NAME.match(path.name)
    return int(match.group(1)) if match else None


def is_complete(path: Path) -> bool:
    if not all((path / name).is_file() for name in REQUIRED):
        return False
    if not any(path.glob("adapter_model.*")):
        return False
    try:
        state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return state.get("global_step") == checkpoint_step(path)


def find_checkpoints(checkpoints_dir: Path) -> list[Path]:
    """checkpoint-N directories, oldest step first."""
    if not checkpoints_dir.is_dir():
        return []
    found = [p for p in checkpoints_dir.iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    return sorted(found, key=checkpoint_step)


def latest_complete_checkpoint(checkpoints_dir: Path, remove_incomplete: bool = False) -> Path | None:
    """The highest-step complete checkpoint; incomplete ones above it are optionally deleted."""
    latest = None
    for path in find_checkpoints(checkpoints_dir):
        if is_complete(path):
            latest = path
        elif remove_incomplete:
            print(f"removing incomplete checkpoint {path.name} (interrupted while saving)", flush=True)
            shutil.rmtree(path, ignore_errors=True)
    return latest


def rebase_best_checkpoint(checkpoint: Path) -> None:
    """Point trainer_state.json's best_model_checkpoint (an absolute path) at this run's own copy of it.

    transformers records where the best checkpoint was when it was saved; a run directory that was moved or
    copied since would otherwise restore the best weights from the old place, or fail when that is gone."""
    path = checkpoint / "trainer_state.json"
    state = json.loads(path.read_text(encoding="utf-8"))
    best = state.get("best_model_checkpoint")
    if best and Path(best).parent != checkpoint.parent and (checkpoint.parent / Path(best).name).is_dir():
        state["best_model_checkpoint"] = str(checkpoint.parent / Path(best).name)
        path.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n", encoding="utf-8")
