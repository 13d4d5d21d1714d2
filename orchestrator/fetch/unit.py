"""What one fetch brings: a folder of a run verified by its own manifest.json.

`ADAPTER` is the run's `adapter/` (with run.json, metrics.jsonl, eval.json and tensorboard/ beside it) landing
in `DEST/<job>/<run id>/adapter/`; `export_unit(label)` is the run's `exports/<label>/` (written by
`orch export`) landing, flat, in `DEST/<job>/<run id>/exports/<label>/`, next to the fetched adapter.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Unit:
    folder: str = "adapter"     # on the instance, relative to the run folder
    local: str = "adapter"      # where its files land inside the destination ("": the destination itself)
    extras: bool = True         # run.json, metrics.jsonl, eval.json, tensorboard/ travel with it
    what: str = "adapter"

    def __post_init__(self):
        if self.local not in ("", self.folder):
            raise ValueError(f"a unit lands as {self.folder!r} or flat, not as {self.local!r}")

    def member(self, rel: str) -> str:
        """The path of one of its files in the archive and in the destination."""
        return f"{self.local}/{rel}" if self.local else rel

    def tar_root(self, run_dir: str) -> str:
        return run_dir if self.local else posixpath.join(run_dir, self.folder)

    def final(self, dest: Path, job: str, run_id: str) -> Path:
        """The verified copy on this machine."""
        if self.local:
            return dest / job / run_id
        return dest / job / run_id / Path(*self.folder.split("/"))


ADAPTER = Unit()


def export_unit(label: str) -> Unit:
    import re

    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,40}", label or ""):
        from ..errors import InputError

        raise InputError(f"--export {label!r} is not an export label", hint="e.g. lora, merged, merged-w4a16")
    return Unit(folder=f"exports/{label}", local="", extras=False, what=f"{label} export")
