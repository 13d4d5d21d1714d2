"""Round trip 1 of a fetch: what the run folder holds, judged before any byte of the adapter moves.

`remote_payload/inspect_run.py` (run from the payload folder that started the run) prints the run's state --
decided by `remote_payload/runstate.py`, the one authority -- its run.json, the adapter's manifest and the
adapter folder's actual files. Only a run the payload marked `succeeded` whose process (if it ended) exited 0
is fetched; an adapter folder that does not match its manifest (missing, extra or wrongly sized files,
links) is refused here.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CheckFailed, RemoteError
from ..remote import Remote

MANIFEST = "manifest.json"                            # adapter/manifest.json
SUCCEEDED, FAILED = "succeeded", "failed"             # remote_payload.runstate.Status


@dataclass(frozen=True)
class ManifestEntry:
    path: str      # relative to adapter/, "/"-separated
    size: int
    sha256: str


def inspect(transport, instance, run_dir: str, where: str, payload_dir: str | None = None,
            folder: str = "adapter") -> dict:
    """The run's state and `folder`'s manifest and files. Another folder than adapter/ (an export) is read
    with the current payload's inspect_run.py: older payloads do not know --folder."""
    args = [run_dir] if folder == "adapter" else [run_dir, "--folder", folder]
    return Remote(transport, instance).json("inspect_run", *args, what=f"reading the run folder {run_dir}",
                                            payload_dir=payload_dir if folder == "adapter" else None, timeout=60)


def check_finished(info: dict, where: str, run_id: str, run_dir: str, final: Path) -> None:
    """Refuse anything but a run its payload marked succeeded (and whose process, if it ended, exited 0)."""
    if not info.get("exists"):
        hint = "`orch status` lists the runs on the instance; pass the right one with --run"
        if final.exists():
            hint += f" (a fetched copy of run {run_id} is already at {final})"
        raise CheckFailed(f"{where}: no such run on the instance ({run_dir} does not exist)", hint=hint)
    state = info.get("state") or {}
    run = info.get("run") if isinstance(info.get("run"), dict) else {}
    status = run.get("status")
    logs = f"`orch logs --run {run_id}`"
    if state.get("state") == "unknown":
        raise CheckFailed(f"{where}: the run's state is unknown: {state.get('reason')}",
                          hint=f"look at {run_dir} on the instance: repair or remove the damaged file")
    if status == SUCCEEDED:
        if state.get("exit_code") not in (None, 0):
            raise CheckFailed(f"{where}: run.json says {status!r} but the training process exited with code "
                              f"{state['exit_code']}", hint=f"see {logs}; the adapter may be incomplete, so it is "
                                                            "not fetched")
        return
    if status == FAILED:
        error = run.get("error")
        why = f": {error.get('type', 'error')}: {error.get('message', '')}" if isinstance(error, dict) else ""
        raise CheckFailed(f"{where}: the run failed (status {status!r}{why}); there is no adapter to fetch",
                          hint=f"see why with {logs}; fix it and `orch train` again (or `orch train --resume` "
                               "to continue from its last checkpoint)")
    ended = {"stopped": "was stopped (`orch stop`) before it finished",
             "finished": "ended (exit code 0) without marking itself succeeded in run.json",
             "failed": f"ended with exit code {state.get('exit_code')} before it finished",
             "lost": "stopped without finishing (its process is gone: lost)"}
    if state.get("state") in ended:
        raise CheckFailed(f"{where}: the run {ended[state['state']]}; there is no final adapter to fetch",
                          hint=f"see {logs}; `orch train --resume` continues it from its last checkpoint")
    if state.get("state") in ("running", "starting"):
        raise CheckFailed(f"{where}: the run is still {status or state['state']}; its adapter is not final yet",
                          hint=f"wait for it (`orch logs --run {run_id} --follow` or `orch status`), then run "
                               "fetch-adapter again")
    why = info.get("run_error") or "missing"
    raise CheckFailed(f"{where}: cannot tell whether the run finished: {run_dir}/run.json is {why} and the "
                      "run has no exit code", hint="`orch status` shows the run's state; fetch it once it has "
                                                    "finished")


def parse_manifest(info: dict, where: str, run_dir: str, folder: str = "adapter") -> tuple[Any, list[ManifestEntry]]:
    manifest = info.get("manifest")
    if manifest is None:
        why = info.get("manifest_error") or "missing"
        if folder != "adapter":
            raise CheckFailed(f"{where}: no finished export at {run_dir}/{folder} ({MANIFEST} is {why})",
                              hint="make it with `orch export` (an export is complete only once its manifest "
                                   "is written)")
        raise CheckFailed(f"{where}: the adapter is incomplete: {run_dir}/adapter/{MANIFEST} is {why}",
                          hint="the payload writes the manifest last, after the adapter is saved; a run "
                               "without it did not save its adapter (see `orch logs`). Re-run or "
                               "`orch train --resume`")
    raw = manifest.get("files") if isinstance(manifest, dict) else None
    bad = f"{where}: {run_dir}/{folder}/{MANIFEST} is not a valid manifest"
    if not isinstance(raw, list) or not raw:
        raise CheckFailed(f"{bad}: it needs a non-empty \"files\" list of {{path, size, sha256}}")
    entries, seen = [], set()
    for item in raw:
        try:
            path, size, digest = item["path"], item["size"], str(item["sha256"]).lower()
        except (KeyError, TypeError):
            raise CheckFailed(f"{bad}: entry {item!r} lacks path, size or sha256") from None
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or len(digest) != 64 or \
                any(c not in "0123456789abcdef" for c in digest):
            raise CheckFailed(f"{bad}: entry for {path!r} has a bad size or sha256")
        if not safe_relpath(path) or path == MANIFEST:
            raise CheckFailed(f"{bad}: path {path!r} is not a plain relative path inside {folder}/",
                              hint="the manifest may only name files inside its own folder")
        if path in seen:
            raise CheckFailed(f"{bad}: {path!r} is listed twice")
        seen.add(path)
        entries.append(ManifestEntry(path, size, digest))
    return manifest, entries


def check_remote_files(info: dict, entries: list[ManifestEntry], where: str, run_dir: str,
                       folder: str = "adapter") -> None:
    actual: dict[str, int] = info.get("adapter_files") or {}
    problems = []
    for rel in info.get("adapter_odd") or []:
        problems.append(f"{folder}/{rel} is not a regular file (a link or a device)")
    listed = {e.path for e in entries}
    missing = [e.path for e in entries if e.path not in actual]
    extra = sorted(set(actual) - listed - {MANIFEST})
    if missing:
        problems.append("missing: " + ", ".join(f"{folder}/{p}" for p in missing))
    if extra:
        problems.append("not in the manifest: " + ", ".join(f"{folder}/{p}" for p in extra))
    for e in entries:
        if e.path in actual and actual[e.path] != e.size:
            problems.append(f"{folder}/{e.path} is {actual[e.path]} bytes on the instance, the manifest says "
                            f"{e.size}: the file on the instance is corrupted or incomplete")
    if problems:
        raise CheckFailed(f"{where}: {run_dir}/{folder} does not match its manifest:\n    "
                          + "\n    ".join(problems),
                          hint="the adapter on the instance is incomplete or was changed after the run "
                               "saved it; train again (`orch train`) or fetch another run with --run")


def safe_relpath(path: Any) -> bool:
    if not isinstance(path, str) or not path or "\0" in path or "\\" in path or path.startswith("/"):
        return False
    if posixpath.normpath(path) != path:
        return False
    return all(part not in ("", ".", "..") for part in path.split("/"))


__all__ = ["MANIFEST", "ManifestEntry", "RemoteError", "check_finished", "check_remote_files", "inspect",
           "parse_manifest", "safe_relpath"]
