"""`orch fetch-adapter`: pull a finished run's adapter to `DEST/<job>/<run id>/`, every file verified.

Two round trips over one connection: `inspect` (is the run finished, does its adapter folder match its
manifest?) and `receive` (one tar stream of the files still missing). `destination` keeps the local side
(partial folder, resume, verification read back from disk, the final rename); `archive` uploads a verified
copy to S3 (`--upload`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CheckFailed, OrchError
from .archive import UploadResult, upload_adapter
from .destination import (Bar, Lock, check_component, fsync_dir, list_files, load_json, matches, reusable,
                          same_manifest, set_aside, total_size, verified)
from .inspect import MANIFEST, check_finished, check_remote_files, inspect, parse_manifest, safe_relpath
from .receive import receive
from .unit import ADAPTER, Unit, export_unit

EXTRAS = ("run.json", "metrics.jsonl", "eval.json")   # fetched beside adapter/ when present
EXTRA_DIRS = ("tensorboard",)                         # and these folders' files (`orch tensorboard --local`)


@dataclass
class FetchResult:
    """What a fetch did; `to_json()` is the `--json` document."""

    instance: str
    job: str
    run_id: str
    run_dir: str                      # the run folder on the instance
    dest: Path                        # DEST/<job>/<run id>
    status: str                       # "fetched" | "resumed" | "present"
    files: list[str]                  # every file in dest, relative to it
    transferred: list[str]            # files that crossed the network this time
    skipped: list[str]                # adapter files already verified locally, not transferred again
    bytes: int                        # file bytes transferred this time
    total_bytes: int                  # bytes of every file in dest
    seconds: float
    round_trips: int
    set_aside: Path | None = None     # a previous, different destination moved out of the way
    what: str = "adapter"             # "adapter", or "<label> export" (orch fetch-adapter --export)

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6 if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"instance": self.instance, "job": self.job, "run_id": self.run_id, "run_dir": self.run_dir,
                "dest": str(self.dest), "status": self.status, "verified": True, "files": self.files,
                "transferred": self.transferred, "skipped": self.skipped, "bytes": self.bytes,
                "total_bytes": self.total_bytes, "seconds": round(self.seconds, 3),
                "mb_per_s": round(self.mb_per_s, 1), "round_trips": self.round_trips,
                "set_aside": str(self.set_aside) if self.set_aside else None, "what": self.what}

    def summary(self) -> str:
        """One or two lines for people (stderr)."""
        if self.status == "present":
            line = (f"{self.what} of run {self.run_id} already fetched and verified at {self.dest} "
                    f"({len(self.files)} files, {self.total_bytes / 1e6:.1f} MB); nothing transferred")
        else:
            line = (f"{self.what} of run {self.run_id} fetched from {self.instance} to {self.dest}: "
                    f"{len(self.files)} files verified (sha256), {self.bytes / 1e6:.1f} MB in {self.seconds:.1f} s "
                    f"({self.mb_per_s:.0f} MB/s)")
            if self.skipped:
                line += f"; resumed: {len(self.skipped)} files were already here"
        if self.set_aside:
            line += f"\nthe previous, different copy was moved to {self.set_aside}"
        return line


def fetch_adapter(transport, instance, run_dir: str, dest: Path, *, job: str, run_id: str,
                  progress: bool = True, payload_dir: str | None = None, unit: Unit = ADAPTER) -> FetchResult:
    """Fetch run `run_id`'s adapter (and run.json, metrics.jsonl, eval.json, tensorboard/) into `dest/job/run_id/`;
    with `unit=export_unit(label)`, its export RUN/exports/<label> into `dest/job/run_id/exports/<label>/`.

    Raises CheckFailed (run unfinished or failed, adapter incomplete or corrupted), RemoteError (the
    instance or the transfer failed; re-running resumes), InputError (bad names), OrchError (local disk).
    """
    started = time.monotonic()
    trips_before = transport.commands_run
    name = transport.instance_name
    check_component(job, "job name")
    check_component(run_id, "run id")
    dest = Path(dest).expanduser().absolute()
    final = unit.final(dest, job, run_id)
    job_dir = final.parent
    partial = job_dir / f".{final.name}.partial"
    where = f"{name}: run {run_id}"

    info = inspect(transport, instance, run_dir, where, payload_dir, folder=unit.folder)
    remote_run = info.get("run_dir") or run_dir
    check_finished(info, where, run_id, remote_run, final)
    manifest, entries = parse_manifest(info, where, remote_run, unit.folder)
    check_remote_files(info, entries, where, remote_run, unit.folder)
    extras = wanted_extras(info.get("extras") or {}) if unit.extras else []

    try:
        job_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OrchError(f"cannot create {job_dir}: {exc.strerror or exc}",
                        hint="choose a writable destination with --dest") from exc

    with Lock(job_dir / f".{final.name}.lock", where, dest):
        moved = None
        if final.exists():
            if verified(final, manifest, entries, unit.local) and \
                    extras_present(final, info.get("extras") or {}, extras):
                files = list_files(final)
                return FetchResult(name, job, run_id, remote_run, final, "present", files, [], [], 0,
                                   total_size(final, files), time.monotonic() - started,
                                   transport.commands_run - trips_before, what=unit.what)
            only_exports = bool(unit.local) and not (final / unit.local).exists()   # exports fetched first
            if not partial.exists() and (same_manifest(final, manifest, unit.local) or only_exports):
                final.rename(partial)            # damaged, or an extra missing: keep its good files
            else:
                moved = set_aside(final)

        partial.mkdir(parents=True, exist_ok=True)
        have = reusable(partial, entries, extras, unit.local)
        want = [e for e in entries if e.path not in have]
        members = [unit.member(e.path) for e in want] + [unit.member(MANIFEST)] + extras
        total = sum(e.size for e in want) + sum(info["extras"][n] for n in extras) + \
            info["adapter_files"].get(MANIFEST, 0)
        stall = instance.stall_timeout
        with Bar(progress, total, f"fetching {where}") as bar:
            receive(transport, unit.tar_root(remote_run), members, partial, where, stall_timeout=stall, bar=bar,
                    done_before=len(have), n_entries=len(entries), total=total, prefix=unit.member(""))

        # The manifest that travelled with the files must be the one the first round trip read.
        if load_json(partial / unit.member(MANIFEST)) != manifest:
            raise CheckFailed(f"{where}: the {unit.what} changed on the instance while it was being fetched "
                              f"({remote_run}/{unit.folder}/{MANIFEST} is not the one read a moment before)",
                              hint="wait until the run has finished saving, then fetch again (files "
                                   "already verified are kept)")
        _verify_received(partial, want, where, remote_run, final, unit)

        # Everything is here and verified: the partial folder becomes the destination.
        if final.exists():                      # appeared meanwhile (not through a locked fetch)
            moved = set_aside(final)
        try:
            fsync_dir(partial)
            partial.rename(final)
            fsync_dir(job_dir)
        except OSError as exc:
            raise OrchError(f"cannot rename {partial} to {final}: {exc.strerror or exc}") from exc

    files = list_files(final)
    transferred = [m for m in members if (final / m).exists()]
    return FetchResult(name, job, run_id, remote_run, final, "resumed" if have else "fetched", files,
                       transferred, sorted(unit.member(p) for p in have),
                       sum((final / m).stat().st_size for m in transferred), total_size(final, files),
                       time.monotonic() - started, transport.commands_run - trips_before, moved, unit.what)


def wanted_extras(listed: dict) -> list[str]:
    """The extras to bring: run.json, metrics.jsonl, eval.json and the files of tensorboard/ the instance listed."""
    return [n for n in listed if n in EXTRAS or (n.split("/", 1)[0] in EXTRA_DIRS and "/" in n and safe_relpath(n))]


def extras_present(final: Path, listed: dict, extras: list[str]) -> bool:
    """Whether an already fetched copy holds every extra at the instance's size (a copy fetched before tensorboard/
    travelled, or before `orch eval` rewrote eval.json, gets the rest; its adapter files are kept)."""
    return all((final / n).is_file() and (final / n).stat().st_size == listed[n] for n in extras)


def _verify_received(partial: Path, want, where: str, remote_run: str, final: Path, unit: Unit = ADAPTER) -> None:
    """Read every received adapter file back from disk and compare it with the manifest."""
    from .destination import sha256_of

    corrupted = []
    for entry in want:
        path = partial / unit.member(entry.path)
        if not matches(path, entry):
            size = path.stat().st_size if path.is_file() else 0
            digest = sha256_of(path) if path.is_file() else "(missing)"
            path.unlink(missing_ok=True)
            corrupted.append((entry, size, digest))
    if corrupted:
        lines = [f"{unit.folder}/{e.path}: sha256 {got} ({size} bytes), the manifest says {e.sha256} ({e.size} bytes)"
                 for e, size, got in corrupted]
        raise CheckFailed(
            f"{where}: {len(corrupted)} file(s) do not match the {unit.what}'s manifest once written here: "
            f"the file on the instance is corrupted, or this disk did not keep what was written\n    "
            + "\n    ".join(lines),
            hint=f"if the instance's copy ({remote_run}/{unit.folder}) was damaged after the run saved it, train again "
                 f"(`orch train`) or fetch another run with --run; if this disk is full or limited, free space "
                 f"or choose another --dest. Nothing was written to {final}")


__all__ = ["ADAPTER", "FetchResult", "Unit", "UploadResult", "export_unit", "fetch_adapter", "upload_adapter"]
