"""The fetch's local side: the destination folder `DEST/<job>/<run id>/`, its partial twin, their verification.

Files land in `DEST/<job>/.<run id>.partial/`; the folder is renamed to its final name only when every file,
read back from disk, matches the manifest (size and sha256). Re-running after an interruption re-uses what
the partial folder already holds (verified the same way) and asks the instance only for the rest. A
destination that already holds this adapter, verified, is left alone; a different one is set aside.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from ..errors import CheckFailed, InputError, OrchError
from .inspect import MANIFEST, ManifestEntry, parse_manifest

CHUNK = 1 << 20                                       # local read/hash granularity


def check_component(value: str, what: str) -> None:
    if not value or value in (".", "..") or "/" in value or "\\" in value or value.startswith(".") \
            or "\0" in value:
        raise InputError(f"{what} {value!r} cannot be used as a folder name",
                         hint="use a plain name without '/' that does not start with '.'")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def matches(path: Path, entry: ManifestEntry) -> bool:
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size != entry.size:
            return False
        return sha256_of(path) == entry.sha256
    except OSError:
        return False


def load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


def same_manifest(folder: Path, manifest: Any, sub: str = "adapter") -> bool:
    return load_json(folder / sub / MANIFEST) == manifest


def verified(folder: Path, manifest: Any, entries: list[ManifestEntry], sub: str = "adapter") -> bool:
    """True when `folder` holds exactly this adapter (its manifest and every file, sha256 checked); `sub`: the
    folder inside it the manifest covers ("" for an export, whose files lie in `folder` itself)."""
    if not same_manifest(folder, manifest, sub):
        return False
    adapter = folder / sub
    present = {p.relative_to(adapter).as_posix() for p in adapter.rglob("*") if not p.is_dir()}
    if present != {e.path for e in entries} | {MANIFEST}:
        return False
    return all(matches(adapter / e.path, e) for e in entries)


def reusable(partial: Path, entries: list[ManifestEntry], extras: list[str], sub: str = "adapter") -> set[str]:
    """Adapter files already in the partial folder that match the manifest; anything else there goes (but
    exports/, fetched into a run's destination on their own)."""
    by_path = {e.path: e for e in entries}
    keep: set[str] = set()
    adapter = partial / sub
    for child in list(partial.iterdir()) if sub else []:
        if child.name in (sub, "exports") and child.is_dir() and not child.is_symlink():
            continue
        if child.name in extras and child.is_file() and not child.is_symlink():
            continue                            # re-sent each time anyway (small), overwritten
        _remove(child)
    if adapter.is_dir():
        for path in sorted(adapter.rglob("*"), reverse=True):
            rel = path.relative_to(adapter).as_posix()
            if path.is_dir() and not path.is_symlink():
                if not any(path.iterdir()):
                    path.rmdir()
                continue
            entry = by_path.get(rel)
            if entry is not None and matches(path, entry):
                keep.add(rel)
            else:
                _remove(path)
    return keep


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def set_aside(folder: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    target = folder.with_name(f"{folder.name}.superseded-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = folder.with_name(f"{folder.name}.superseded-{stamp}-{n}")
    folder.rename(target)
    return target


def list_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def total_size(folder: Path, files: list[str]) -> int:
    return sum((folder / f).stat().st_size for f in files)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Lock:
    """An exclusive lock so that two fetches of the same run into the same place never interleave."""

    def __init__(self, path: Path, where: str, dest: Path):
        self.path, self.where, self.dest = path, where, dest
        self.fd = None

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            raise OrchError(f"{self.where}: another fetch of this run into {self.dest} is in progress",
                            hint="wait for it to finish, then run the command again") from None
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)



def verify_local(folder: Path, sub: str = "adapter") -> list[ManifestEntry]:
    """Check a fetched destination against its own adapter/manifest.json (`sub`/manifest.json); its entries,
    or CheckFailed."""
    folder = Path(folder)
    manifest = load_json(folder / sub / MANIFEST)
    if manifest is None:
        raise CheckFailed(f"{folder} holds no fetched {sub or 'export'} ({folder / sub / MANIFEST} is missing)",
                          hint="fetch it first with `orch fetch-adapter`")
    _, entries = parse_manifest({"manifest": manifest}, str(folder), str(folder), sub or ".")
    if not verified(folder, manifest, entries, sub):
        raise CheckFailed(f"{folder}: the adapter no longer matches its manifest (a file changed, is missing "
                          "or was added)", hint="fetch it again with `orch fetch-adapter` (it repairs the copy)")
    return entries


class Bar:
    """A rich progress bar on stderr (bytes, rate, time left), or nothing."""

    def __init__(self, enabled: bool, total: int, label: str):
        self.enabled, self.total, self.label = enabled, total, label
        self._progress = self._task = None

    def __enter__(self) -> "Bar":
        if self.enabled:
            from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                       TransferSpeedColumn)

            from ..output import console

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                      TransferSpeedColumn(), TimeRemainingColumn(), console=console(),
                                      transient=False)
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=self.total)
        return self

    def advance(self, n: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()


