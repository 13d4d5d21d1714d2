"""`orch fetch-adapter`: pull a finished run's adapter to `DEST/<job>/<run id>/`, every file verified.

Two round trips over one connection:

1. a small stdlib `python3 -c` script on the instance prints, as one JSON document, the run's `run.json`,
   `adapter/manifest.json`, the adapter folder's actual file list with sizes, and which of `run.json`,
   `metrics.jsonl`, `eval.json` exist. An unfinished run, a missing manifest, or an adapter folder that
   does not match its manifest (missing, extra or wrongly sized files, links) is refused here, before
   any byte of the adapter moves.
2. ONE `tar -C RUN -cf - -- <files>` (files as argv, never a shell string) streamed over a raw channel
   (`transport.open`) and unpacked while it arrives: headers decoded by `tarfile.TarInfo.frombuf`, file
   data passed on as zero-copy slices to a writer thread that hashes (sha256) and writes it. Only the
   members asked for, as regular files, are accepted.

Files land in `DEST/<job>/.<run id>.partial/` and the folder is renamed to its final name only when every
file matches the manifest (size and sha256). Re-running after an interruption re-uses what the partial
folder already holds (size + sha256 match) and asks the instance only for the rest. A destination that
already holds this adapter, verified, is left alone.

`upload_adapter` archives a verified destination folder to S3 (boto3's transfer manager, one object per
file, a manifest of the upload written last).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import posixpath
import shutil
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import CheckFailed, InputError, OrchError, RemoteError

# Words run.json uses for a run's state (remote_payload/runrecord.py writes "running", then "succeeded" or
# "failed"; the others are accepted so that a differently worded payload does not block a fetch).
DONE = {"finished", "succeeded", "success", "completed", "complete", "done"}
RUNNING = {"running", "starting", "started", "training", "evaluating", "saving", "queued", "pending"}

EXTRAS = ("run.json", "metrics.jsonl", "eval.json")   # fetched beside adapter/ when present
MANIFEST = "manifest.json"                            # adapter/manifest.json
CHUNK = 1 << 20                                       # local read/hash granularity
READ_SIZE = 4 << 20                                   # largest read from the stream
TAR_BLOCKING = "256"                                  # 128 KiB tar records: fewer, larger writes

# Runs on the instance with the system python3 (stdlib only, 3.6+). argv[1]: the run folder.
INSPECT_SCRIPT = r"""
import json, os, stat, sys
run = os.path.abspath(os.path.expanduser(sys.argv[1]))
out = {"run_dir": run, "exists": os.path.isdir(run)}
def load(rel):
    try:
        with open(os.path.join(run, rel), "rb") as f:
            data = f.read(16 << 20)
    except FileNotFoundError:
        return None, "missing"
    except OSError as e:
        return None, "%s: %s" % (type(e).__name__, e.strerror or e)
    try:
        return json.loads(data.decode("utf-8")), None
    except ValueError as e:
        return None, "not valid JSON (%s)" % e
def text(rel):
    try:
        with open(os.path.join(run, rel)) as f:
            return f.read(200).strip()
    except (OSError, ValueError):
        return None
if out["exists"]:
    out["run"], out["run_error"] = load("run.json")
    out["manifest"], out["manifest_error"] = load("adapter/manifest.json")
    files, odd = {}, []
    top = os.path.join(run, "adapter")
    for d, dirs, names in os.walk(top):
        for n in names + [x for x in dirs if os.path.islink(os.path.join(d, x))]:
            p = os.path.join(d, n)
            rel = os.path.relpath(p, top).replace(os.sep, "/")
            try:
                st = os.lstat(p)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                files[rel] = st.st_size
            else:
                odd.append(rel)
    out["adapter_dir"] = os.path.isdir(top)
    out["adapter_files"], out["adapter_odd"] = files, odd
    out["extras"] = {}
    for n in ("run.json", "metrics.jsonl", "eval.json"):
        p = os.path.join(run, n)
        if os.path.isfile(p) and not os.path.islink(p):
            out["extras"][n] = os.path.getsize(p)
    done, _ = load("exit_code")  # supervise.py: {"exit_code": N, "stopped": bool, ...}
    if isinstance(done, dict):
        out["exit_code"], out["stopped"] = done.get("exit_code"), bool(done.get("stopped"))
    elif isinstance(done, int):
        out["exit_code"], out["stopped"] = done, False
    else:
        out["exit_code"], out["stopped"] = None, False
    pid = text("pid")
    alive = None
    if pid and pid.isdigit() and int(pid) > 0:
        try:
            os.kill(int(pid), 0)
            alive = True
        except ProcessLookupError:
            alive = False
        except OSError:
            alive = True
    out["pid_alive"] = alive
sys.stdout.write(json.dumps(out))
"""


# ----------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ManifestEntry:
    path: str      # relative to adapter/, "/"-separated
    size: int
    sha256: str


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

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6 if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"instance": self.instance, "job": self.job, "run_id": self.run_id, "run_dir": self.run_dir,
                "dest": str(self.dest), "status": self.status, "verified": True, "files": self.files,
                "transferred": self.transferred, "skipped": self.skipped, "bytes": self.bytes,
                "total_bytes": self.total_bytes, "seconds": round(self.seconds, 3),
                "mb_per_s": round(self.mb_per_s, 1), "round_trips": self.round_trips,
                "set_aside": str(self.set_aside) if self.set_aside else None}

    def summary(self) -> str:
        """One or two lines for people (stderr)."""
        if self.status == "present":
            line = (f"adapter of run {self.run_id} already fetched and verified at {self.dest} "
                    f"({len(self.files)} files, {_mb(self.total_bytes)}); nothing transferred")
        else:
            line = (f"adapter of run {self.run_id} fetched from {self.instance} to {self.dest}: "
                    f"{len(self.files)} files verified (sha256), {_mb(self.bytes)} in {self.seconds:.1f} s "
                    f"({self.mb_per_s:.0f} MB/s)")
            if self.skipped:
                line += f"; resumed: {len(self.skipped)} files were already here"
        if self.set_aside:
            line += f"\nthe previous, different copy was moved to {self.set_aside}"
        return line


@dataclass
class UploadResult:
    uri: str                          # s3://bucket/prefix/<job>/<run id>/
    files: list[str]
    bytes: int
    seconds: float
    endpoint: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"uri": self.uri, "files": self.files, "bytes": self.bytes,
                "seconds": round(self.seconds, 3), "endpoint": self.endpoint}

    def summary(self) -> str:
        return f"uploaded {len(self.files)} files ({_mb(self.bytes)}) to {self.uri} in {self.seconds:.1f} s"


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


# ------------------------------------------------------------------------------------------ fetch


def fetch_adapter(transport, instance, run_dir: str, dest: Path, *, job: str, run_id: str,
                  progress: bool = True) -> FetchResult:
    """Fetch run `run_id`'s adapter (and run.json, metrics.jsonl, eval.json) into `dest/job/run_id/`.

    `transport` is connected to `instance` (an `inventory.Instance`, or None: system `python3`);
    `run_dir` is the run's folder on the instance (e.g. `WORK/runs/<run id>`).
    Raises CheckFailed (run unfinished or failed, adapter incomplete or corrupted), RemoteError (the
    instance or the transfer failed; re-running resumes), InputError (bad names), OrchError (local disk).
    """
    started = time.monotonic()
    trips_before = transport.commands_run
    name = transport.instance_name
    _check_component(job, "job name")
    _check_component(run_id, "run id")
    dest = Path(dest).expanduser().absolute()
    job_dir = dest / job
    final = job_dir / run_id
    partial = job_dir / f".{run_id}.partial"
    where = f"{name}: run {run_id}"

    info = _inspect(transport, instance, run_dir, where)
    remote_run = info.get("run_dir") or run_dir
    _check_finished(info, where, run_id, remote_run, final)
    manifest, entries = _parse_manifest(info, where, remote_run)
    _check_remote_files(info, entries, where, remote_run)
    extras = [n for n in EXTRAS if n in (info.get("extras") or {})]

    try:
        job_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OrchError(f"cannot create {job_dir}: {exc.strerror or exc}",
                        hint="choose a writable destination with --dest") from exc

    with _lock(job_dir / f".{run_id}.lock", where, dest):
        set_aside = None
        if final.exists():
            if _verified(final, manifest, entries):
                files = _list_files(final)
                return FetchResult(name, job, run_id, remote_run, final, "present", files, [], [], 0,
                                   _total(final, files), time.monotonic() - started,
                                   transport.commands_run - trips_before)
            if not partial.exists() and _same_manifest(final, manifest):
                final.rename(partial)            # a damaged copy of this adapter: keep its good files
            else:
                set_aside = _set_aside(final)

        partial.mkdir(parents=True, exist_ok=True)
        have = _reusable(partial, entries, extras)
        want = [e for e in entries if e.path not in have]
        members = [f"adapter/{e.path}" for e in want] + [f"adapter/{MANIFEST}"] + extras
        expected = {f"adapter/{e.path}": e for e in want}

        received = _receive(transport, remote_run, members, partial, progress, where,
                            total=sum(e.size for e in want) + sum(info["extras"][n] for n in extras)
                            + info["adapter_files"].get(MANIFEST, 0),
                            done_before=len(have), n_entries=len(entries))

        # The manifest that travelled with the files must be the one the first round trip read.
        streamed = _load_json(partial / "adapter" / MANIFEST)
        if streamed != manifest:
            raise CheckFailed(f"{where}: the adapter changed on the instance while it was being fetched "
                              f"({remote_run}/adapter/{MANIFEST} is not the one read a moment before)",
                              hint="wait until the run has finished saving, then fetch again (files "
                                   "already verified are kept)")

        corrupted = []
        for member, entry in expected.items():
            size, digest = received[member]
            if size != entry.size or digest != entry.sha256:
                (partial / member).unlink(missing_ok=True)
                corrupted.append((entry, size, digest))
        if corrupted:
            lines = [f"adapter/{e.path}: sha256 {got} ({size} bytes), the manifest says {e.sha256} "
                     f"({e.size} bytes)" for e, size, got in corrupted]
            raise CheckFailed(
                f"{where}: {len(corrupted)} adapter file(s) on the instance do not match the adapter's "
                f"manifest: the file on the instance is corrupted\n    " + "\n    ".join(lines),
                hint=f"the copy on the instance ({remote_run}/adapter) was damaged after the run saved it "
                     f"(disk or a later change); train again (`orch train`) or fetch another run with --run. "
                     f"Nothing was written to {final}")

        # Everything is here and verified: the partial folder becomes the destination.
        if final.exists():                      # appeared meanwhile (not through a locked fetch)
            set_aside = _set_aside(final)
        try:
            _fsync_dir(partial)
            partial.rename(final)
            _fsync_dir(job_dir)
        except OSError as exc:
            raise OrchError(f"cannot rename {partial} to {final}: {exc.strerror or exc}") from exc

    files = _list_files(final)
    transferred = [m for m in members if (final / m).exists()]
    return FetchResult(name, job, run_id, remote_run, final, "resumed" if have else "fetched", files,
                       transferred, sorted(f"adapter/{p}" for p in have),
                       sum(size for size, _ in received.values()), _total(final, files),
                       time.monotonic() - started, transport.commands_run - trips_before, set_aside)


# ---------------------------------------------------------------------------- round trip 1: inspect


def _inspect(transport, instance, run_dir: str, where: str) -> dict:
    python = getattr(instance, "python", None) or "python3"
    result = transport.run([python, "-c", INSPECT_SCRIPT, run_dir], timeout=60)
    try:
        info = json.loads(result.stdout)
    except ValueError:
        info = None
    if not isinstance(info, dict):
        raise RemoteError(f"{where}: could not read the run folder {run_dir}: unexpected answer "
                          f"{result.text[:200]!r}")
    return info


def _check_finished(info: dict, where: str, run_id: str, run_dir: str, final: Path) -> None:
    """Only a run whose payload marked it succeeded (and whose process, if it ended, exited 0) is fetched."""
    if not info.get("exists"):
        hint = "`orch status` lists the runs on the instance; pass the right one with --run"
        if final.exists():
            hint += f" (a fetched copy of run {run_id} is already at {final})"
        raise CheckFailed(f"{where}: no such run on the instance ({run_dir} does not exist)", hint=hint)
    run = info.get("run")
    status = str(run.get("status") or "").lower() if isinstance(run, dict) else ""
    exit_code = info.get("exit_code")          # None while the process has not ended
    logs = f"`orch logs --run {run_id}`"
    if status in DONE:
        if exit_code not in (None, 0):
            raise CheckFailed(f"{where}: run.json says {status!r} but the training process exited with code "
                              f"{exit_code}", hint=f"see {logs}; the adapter may be incomplete, so it is not "
                                                   "fetched")
        return
    if status == "failed" or (status and status not in RUNNING):
        error = run.get("error") if isinstance(run, dict) else None
        why = f": {error.get('type', 'error')}: {error.get('message', '')}" if isinstance(error, dict) else ""
        raise CheckFailed(f"{where}: the run failed (status {status!r}{why}); there is no adapter to fetch",
                          hint=f"see why with {logs}; fix it and `orch train` again (or `orch train --resume` "
                               "to continue from its last checkpoint)")
    # Not marked succeeded: still going, stopped, crashed or lost.
    if exit_code is not None:
        if info.get("stopped"):
            what = "was stopped (`orch stop`) before it finished"
        elif exit_code == 0:
            what = "ended (exit code 0) without marking itself succeeded in run.json"
        else:
            what = f"ended with exit code {exit_code} before it finished"
        raise CheckFailed(f"{where}: the run {what}; there is no final adapter to fetch",
                          hint=f"see {logs}; `orch train --resume` continues it from its last checkpoint")
    if info.get("pid_alive") is False:
        raise CheckFailed(f"{where}: the run stopped without finishing (its process is gone: lost); there is "
                          "no final adapter to fetch",
                          hint=f"continue it with `orch train --resume`, then fetch again; {logs} shows why "
                               "it stopped")
    if status or info.get("pid_alive"):
        raise CheckFailed(f"{where}: the run is still {status or 'running'}; its adapter is not final yet",
                          hint=f"wait for it (`orch logs --run {run_id} --follow` or `orch status`), then run "
                               "fetch-adapter again")
    why = info.get("run_error") or "missing"
    raise CheckFailed(f"{where}: cannot tell whether the run finished: {run_dir}/run.json is {why} and the "
                      "run has no exit code", hint="`orch status` shows the run's state; fetch it once it has "
                                                    "finished")


def _parse_manifest(info: dict, where: str, run_dir: str) -> tuple[Any, list[ManifestEntry]]:
    manifest = info.get("manifest")
    if manifest is None:
        why = info.get("manifest_error") or "missing"
        raise CheckFailed(f"{where}: the adapter is incomplete: {run_dir}/adapter/{MANIFEST} is {why}",
                          hint="the payload writes the manifest last, after the adapter is saved; a run "
                               "without it did not save its adapter (see `orch logs`). Re-run or "
                               "`orch train --resume`")
    raw = manifest.get("files") if isinstance(manifest, dict) else None
    if isinstance(raw, dict):  # {"path": {"size": .., "sha256": ..}} is accepted too
        raw = [{"path": k, **v} for k, v in raw.items() if isinstance(v, dict)]
    bad = f"{where}: {run_dir}/adapter/{MANIFEST} is not a valid adapter manifest"
    if not isinstance(raw, list) or not raw:
        raise CheckFailed(f"{bad}: it needs a non-empty \"files\" list of {{path, size, sha256}}")
    entries, seen = [], set()
    for item in raw:
        try:
            path, size, digest = item["path"], item["size"], str(item["sha256"]).lower()
        except (KeyError, TypeError):
            raise CheckFailed(f"{bad}: entry {item!r} lacks path, size or sha256") from None
        if not isinstance(size, int) or size < 0 or len(digest) != 64 or \
                any(c not in "0123456789abcdef" for c in digest):
            raise CheckFailed(f"{bad}: entry for {path!r} has a bad size or sha256")
        if not _safe_relpath(path) or path == MANIFEST:
            raise CheckFailed(f"{bad}: path {path!r} is not a plain relative path inside adapter/",
                              hint="the manifest may only name files inside the adapter folder")
        if path in seen:
            raise CheckFailed(f"{bad}: {path!r} is listed twice")
        seen.add(path)
        entries.append(ManifestEntry(path, size, digest))
    return manifest, entries


def _check_remote_files(info: dict, entries: list[ManifestEntry], where: str, run_dir: str) -> None:
    actual: dict[str, int] = info.get("adapter_files") or {}
    problems = []
    for rel in info.get("adapter_odd") or []:
        problems.append(f"adapter/{rel} is not a regular file (a link or a device)")
    listed = {e.path for e in entries}
    missing = [e.path for e in entries if e.path not in actual]
    extra = sorted(set(actual) - listed - {MANIFEST})
    if missing:
        problems.append("missing: " + ", ".join(f"adapter/{p}" for p in missing))
    if extra:
        problems.append("not in the manifest: " + ", ".join(f"adapter/{p}" for p in extra))
    for e in entries:
        if e.path in actual and actual[e.path] != e.size:
            problems.append(f"adapter/{e.path} is {actual[e.path]} bytes on the instance, the manifest says "
                            f"{e.size}: the file on the instance is corrupted or incomplete")
    if problems:
        raise CheckFailed(f"{where}: the adapter in {run_dir}/adapter does not match its manifest:\n    "
                          + "\n    ".join(problems),
                          hint="the adapter on the instance is incomplete or was changed after the run "
                               "saved it; train again (`orch train`) or fetch another run with --run")


# ------------------------------------------------------------------------- round trip 2: the stream


class _Source:
    """The remote tar's stdout; counts the bytes received, for the message when it breaks off."""

    def __init__(self, proc):
        self.proc = proc
        self.bytes = 0

    def read(self, n: int = READ_SIZE) -> bytes:
        data = self.proc.read(n)
        self.bytes += len(data)
        return data


class _Interrupted(Exception):
    pass


def _receive(transport, run_dir: str, members: list[str], partial: Path, progress: bool, where: str,
             *, total: int, done_before: int, n_entries: int) -> dict[str, tuple[int, str]]:
    """Stream `members` from the instance into `partial`; {member: (size, sha256)} for each adapter file."""
    argv = ["tar", "-C", run_dir, "-b", TAR_BLOCKING, "-cf", "-", "--", *members]
    wanted = set(members)
    received: dict[str, tuple[int, str]] = {}
    bar = _Bar(progress, total, f"fetching {where}")
    proc = transport.open(argv)
    source = _Source(proc)
    switch = sys.getswitchinterval()
    try:
        # Three threads pass the bytes along (paramiko's reader, this one, the writer): hand the GIL over
        # sooner than the default 5 ms so that none of them idles waiting for it (~10-30% faster here).
        sys.setswitchinterval(min(switch, 0.001))
        with bar:
            _unpack(source, wanted, partial, received, bar)
    except OrchError:
        _kill(proc)
        raise
    except KeyboardInterrupt:
        _kill(proc)
        raise
    except Exception as exc:  # the connection or the remote tar went away: keep what is verified
        _kill(proc)
        stderr = _stderr(proc)
        done = done_before + sum(1 for m in received if m.startswith("adapter/") and m != f"adapter/{MANIFEST}")
        raise RemoteError(
            f"{where}: the transfer was interrupted after {_mb(source.bytes)} of about {_mb(total)} "
            f"({exc if isinstance(exc, _Interrupted) else f'{type(exc).__name__}: {exc}'})"
            f"{' - ' + stderr if stderr else ''}; {done} of {n_entries} "
            f"adapter files are complete in {partial}",
            hint="run the same command again: it resumes, transferring only what is missing") from None
    finally:
        sys.setswitchinterval(switch)
    try:
        code = proc.wait(60)
    except Exception as exc:
        raise RemoteError(f"{where}: the remote tar did not finish: {exc}",
                          hint="run the same command again: it resumes") from None
    if code != 0:
        raise RemoteError(f"{where}: `tar` on the instance exited with {code}: {_stderr(proc) or '(no stderr)'}",
                          hint="run the same command again: it resumes; if it repeats, check the run "
                               f"folder {run_dir} on the instance")
    missing = sorted(wanted - set(received))
    if missing:
        raise RemoteError(f"{where}: the transfer ended without {', '.join(missing)}",
                          hint="run the same command again: it resumes")
    return received


def _unpack(source: _Source, wanted: set[str], partial: Path, received: dict, bar: "_Bar") -> None:
    root = os.path.realpath(partial)
    stream = _TarStream(source.read)
    seen: set[str] = set()
    with _Writer(received) as writer:
        for name, kind, size in stream.members():
            if name not in wanted or name in seen or not _safe_relpath(name):
                raise CheckFailed(f"the instance sent an unexpected archive member {name!r}; refused",
                                  hint="only the files asked for are accepted; check `tar` on the instance")
            if kind not in tarfile.REGULAR_TYPES or kind == tarfile.GNUTYPE_SPARSE:
                raise CheckFailed(f"the instance sent {name!r} as a link or special file; refused",
                                  hint="adapter files must be regular files")
            target = os.path.join(root, *name.split("/"))
            if os.path.commonpath([root, os.path.realpath(os.path.dirname(target))]) != root:
                raise CheckFailed(f"archive member {name!r} would land outside {partial}; refused")
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if os.path.islink(target):
                os.unlink(target)
            seen.add(name)
            writer.begin(name, target)
            for piece in stream.data(size):
                writer.put(piece)
                bar.advance(len(piece))
            writer.end()


class _TarStream:
    """A tar archive read from a byte stream as it arrives.

    Headers are decoded by `tarfile.TarInfo.frombuf` (ustar, GNU long names, pax `path`/`size`); file data
    is handed out as zero-copy slices of the chunks the transport returned, so that the only per-byte
    work in Python's hands is one sha256 update and one write (in `_Writer`'s thread). tarfile's own
    stream mode copies each chunk three more times and ran at ~40% of the channel's speed here.
    """

    def __init__(self, read):
        self._read = read
        self._chunk = memoryview(b"")

    def _more(self) -> None:
        data = self._read(READ_SIZE)
        if not data:
            raise _Interrupted("the archive ended early (connection closed or the remote tar was killed)")
        self._chunk = memoryview(data)

    def _exact(self, n: int) -> bytes:
        parts = []
        while n:
            if not self._chunk:
                self._more()
            piece, self._chunk = self._chunk[:n], self._chunk[n:]
            parts.append(bytes(piece))
            n -= len(piece)
        return b"".join(parts)

    def data(self, n: int):
        """The next `n` bytes, as memoryview slices."""
        while n:
            if not self._chunk:
                self._more()
            piece, self._chunk = self._chunk[:n], self._chunk[n:]
            n -= len(piece)
            yield piece

    def _skip(self, n: int) -> None:
        for _ in self.data(n):
            pass

    def members(self):
        """(name, type, size) per member; the caller reads exactly `size` bytes with `data()` before the next."""
        long_name, pax = None, {}
        while True:
            block = self._exact(tarfile.BLOCKSIZE)
            try:
                info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
            except tarfile.EOFHeaderError:
                self._drain()
                return
            except tarfile.HeaderError as exc:
                raise CheckFailed(f"the instance sent a damaged archive ({exc}); refused",
                                  hint="run the same command again") from None
            padding = -info.size % tarfile.BLOCKSIZE
            if info.type == tarfile.GNUTYPE_LONGNAME:
                long_name = self._exact(info.size).split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
                self._skip(padding)
                continue
            if info.type == tarfile.XHDTYPE:
                pax = _pax_records(self._exact(info.size))
                self._skip(padding)
                continue
            if info.type in (tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE):
                self._skip(info.size + padding)
                continue
            name = pax.get("path") or long_name or info.name
            size = int(pax["size"]) if "size" in pax else info.size
            if info.type not in tarfile.REGULAR_TYPES:
                size = 0                                   # links and devices carry no data
            long_name, pax = None, {}
            yield name, info.type, size
            self._skip(-size % tarfile.BLOCKSIZE)

    def _drain(self) -> None:
        """Read the end-of-archive padding, so that the remote tar can finish writing and exit."""
        self._chunk = memoryview(b"")
        while self._read(READ_SIZE):
            pass


def _pax_records(data: bytes) -> dict[str, str]:
    records, pos = {}, 0
    try:
        while pos < len(data) and data[pos:pos + 1] != b"\0":
            length = int(data[pos:data.index(b" ", pos)])
            key, _, value = data[data.index(b" ", pos) + 1:pos + length - 1].partition(b"=")
            records[key.decode("utf-8", "replace")] = value.decode("utf-8", "surrogateescape")
            pos += length
    except ValueError:
        raise CheckFailed("the instance sent a damaged archive (bad pax header); refused") from None
    return records


class _Writer:
    """Hashes and writes chunks in a second thread (both release the GIL), overlapping the network reads.

    Chunks of one file arrive in order; `end()` closes the file and records (size, sha256) in `received`.
    A write error (disk full) is raised in the reading thread at its next call.
    """

    def __init__(self, received: dict):
        import queue
        import threading

        self.received = received
        self.queue: "queue.Queue" = queue.Queue(maxsize=8)
        self.error: OrchError | None = None
        self.thread = threading.Thread(target=self._run, name="fetch-writer", daemon=True)

    def __enter__(self) -> "_Writer":
        self.thread.start()
        return self

    def _check(self) -> None:
        if self.error is not None:
            raise self.error

    def begin(self, name: str, target: str) -> None:
        self._check()
        self.queue.put(("begin", name, target))

    def put(self, buf: bytes) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(buf)

    def end(self) -> None:
        self.queue.put(("end",))

    def __exit__(self, *exc) -> None:
        self.queue.put(None)
        self.thread.join()
        if exc[0] is None:
            self._check()

    def _run(self) -> None:
        out = digest = name = target = None
        size = 0
        while True:
            item = self.queue.get()
            if item is None:
                break
            if self.error is not None:
                continue                           # drain after a failure
            try:
                if isinstance(item, tuple):
                    if item[0] == "begin":
                        _, name, target = item
                        out, digest, size = open(target, "wb", buffering=0), hashlib.sha256(), 0
                    else:
                        out.close()
                        out = None
                        self.received[name] = (size, digest.hexdigest())
                else:
                    digest.update(item)
                    out.write(item)
                    size += len(item)
            except OSError as exc:
                self.error = _local_error(target, exc)
            except Exception as exc:  # never die silently: the reader would wait on a full queue
                self.error = OrchError(f"writing {target} failed: {type(exc).__name__}: {exc}")
        if out is not None:
            out.close()


def _local_error(path: str, exc: OSError) -> OrchError:
    hint = "free some space or choose another --dest" if exc.errno == errno.ENOSPC else \
        "choose a writable destination with --dest"
    return OrchError(f"cannot write {path}: {exc.strerror or exc}", hint=hint)


def _kill(proc) -> None:
    try:
        proc.kill()
    except Exception:
        pass


def _stderr(proc) -> str:
    try:
        lines = proc.stderr_text().strip().splitlines()
    except Exception:
        return ""
    return " / ".join(lines[-3:])


class _Bar:
    """A rich progress bar on stderr (bytes, rate, time left), or nothing."""

    def __init__(self, enabled: bool, total: int, label: str):
        self.enabled, self.total, self.label = enabled, total, label
        self._progress = self._task = None

    def __enter__(self) -> "_Bar":
        if self.enabled:
            from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                       TransferSpeedColumn)

            from .output import console

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


# ------------------------------------------------------------------------------ local bookkeeping


def _check_component(value: str, what: str) -> None:
    if not value or value in (".", "..") or "/" in value or "\\" in value or value.startswith(".") \
            or "\0" in value:
        raise InputError(f"{what} {value!r} cannot be used as a folder name",
                         hint="use a plain name without '/' that does not start with '.'")


def _safe_relpath(path: Any) -> bool:
    if not isinstance(path, str) or not path or "\0" in path or "\\" in path or path.startswith("/"):
        return False
    if posixpath.normpath(path) != path:
        return False
    return all(part not in ("", ".", "..") for part in path.split("/"))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _matches(path: Path, entry: ManifestEntry) -> bool:
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size != entry.size:
            return False
        return _sha256(path) == entry.sha256
    except OSError:
        return False


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


def _same_manifest(folder: Path, manifest: Any) -> bool:
    return _load_json(folder / "adapter" / MANIFEST) == manifest


def _verified(folder: Path, manifest: Any, entries: list[ManifestEntry]) -> bool:
    """True when `folder` holds exactly this adapter (its manifest and every file, sha256 checked)."""
    if not _same_manifest(folder, manifest):
        return False
    adapter = folder / "adapter"
    present = {p.relative_to(adapter).as_posix() for p in adapter.rglob("*") if not p.is_dir()}
    if present != {e.path for e in entries} | {MANIFEST}:
        return False
    return all(_matches(adapter / e.path, e) for e in entries)


def _reusable(partial: Path, entries: list[ManifestEntry], extras: list[str]) -> set[str]:
    """Adapter files already in the partial folder that match the manifest; anything else there goes."""
    by_path = {e.path: e for e in entries}
    keep: set[str] = set()
    adapter = partial / "adapter"
    for child in list(partial.iterdir()):
        if child.name == "adapter" and child.is_dir() and not child.is_symlink():
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
            if entry is not None and _matches(path, entry):
                keep.add(rel)
            else:
                _remove(path)
    return keep


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _set_aside(folder: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    target = folder.with_name(f"{folder.name}.superseded-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = folder.with_name(f"{folder.name}.superseded-{stamp}-{n}")
    folder.rename(target)
    return target


def _list_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _total(folder: Path, files: list[str]) -> int:
    return sum((folder / f).stat().st_size for f in files)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _lock:
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


# --------------------------------------------------------------------------------------- S3 upload


def verify_local(folder: Path) -> list[ManifestEntry]:
    """Check a fetched destination against its own adapter/manifest.json; its entries, or CheckFailed."""
    folder = Path(folder)
    manifest = _load_json(folder / "adapter" / MANIFEST)
    if manifest is None:
        raise CheckFailed(f"{folder} holds no fetched adapter ({folder}/adapter/{MANIFEST} is missing)",
                          hint="fetch it first with `orch fetch-adapter`")
    _, entries = _parse_manifest({"manifest": manifest}, str(folder), str(folder))
    if not _verified(folder, manifest, entries):
        raise CheckFailed(f"{folder}: the adapter no longer matches its manifest (a file changed, is missing "
                          "or was added)", hint="fetch it again with `orch fetch-adapter` (it repairs the copy)")
    return entries


def parse_s3_uri(uri: str) -> tuple[str, str]:
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise InputError(f"--upload {uri!r} is not an S3 URI", hint="use s3://bucket/prefix/")
    bucket, _, prefix = uri[5:].partition("/")
    if not bucket or len(bucket) < 3 or len(bucket) > 63 or "/" in bucket or bucket != bucket.lower():
        raise InputError(f"--upload {uri!r}: {bucket!r} is not a valid bucket name",
                         hint="use s3://bucket/prefix/ with a lower-case bucket name")
    return bucket, prefix.strip("/")


def upload_adapter(dest_dir: Path, s3_uri: str, s3, *, progress: bool = False, client=None) -> UploadResult:
    """Archive a verified fetch (`DEST/<job>/<run id>/`) under `s3_uri/<job>/<run id>/`.

    Every file is re-checked against the adapter manifest first. One object per file (boto3's transfer
    manager: multipart and parallel for big files); then `upload-manifest.json` (path, size, sha256 of
    every object) is written last, so a reader who finds it knows the rest is complete.
    `s3`: the job's S3Settings (endpoint, region, credentials from .env / the environment), or a ready `client`.
    """
    from boto3.s3.transfer import TransferConfig
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    started = time.monotonic()
    folder = Path(dest_dir)
    bucket, prefix = parse_s3_uri(s3_uri)
    entries = verify_local(folder)
    job, run_id = folder.parent.name, folder.name
    base = "/".join(p for p in (prefix, job, run_id) if p) + "/"
    uri = f"s3://{bucket}/{base}"

    sums = {f"adapter/{e.path}": e.sha256 for e in entries}
    files = [f for f in _list_files(folder) if f != f"adapter/{MANIFEST}"] + [f"adapter/{MANIFEST}"]
    listing = []
    for rel in files:
        path = folder / rel
        listing.append({"path": rel, "size": path.stat().st_size,
                        "sha256": sums.get(rel) or _sha256(path)})

    endpoint = s3.endpoint
    if client is None:
        client = s3.client(connect_timeout=10, read_timeout=60, attempts=5)
    transfer = TransferConfig(multipart_threshold=64 << 20, multipart_chunksize=64 << 20, max_concurrency=4)
    at = f" at {endpoint}" if endpoint else ""

    def fail(exc: Exception) -> OrchError:
        if isinstance(exc, NoCredentialsError):
            return OrchError(f"no S3 credentials to upload to {uri}",
                             hint="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (in .env or the environment)")
        code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""
        if code in ("404", "NoSuchBucket"):
            return OrchError(f"bucket {bucket!r} does not exist{at}", hint=f"create it, or fix --upload {s3_uri}")
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return OrchError(f"S3 refused the upload to {uri}{at} ({code})",
                             hint="check the AWS credentials and that they may write to this bucket")
        return OrchError(f"upload to {uri}{at} failed: {exc}", hint="check --upload, the endpoint and the network; "
                                                                     "re-running uploads everything again")

    total = sum(item["size"] for item in listing)
    bar = _Bar(progress, total, f"uploading to {uri}")
    try:
        client.head_bucket(Bucket=bucket)
        with bar:
            for item in listing:
                client.upload_file(str(folder / item["path"]), bucket, base + item["path"],
                                   ExtraArgs={"Metadata": {"sha256": item["sha256"]}}, Config=transfer,
                                   Callback=bar.advance)
        body = json.dumps({"job": job, "run_id": run_id, "files": listing}, indent=2).encode()
        client.put_object(Bucket=bucket, Key=base + "upload-manifest.json", Body=body,
                          ContentType="application/json")
        stored = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base):
            for obj in page.get("Contents", []):
                stored[obj["Key"][len(base):]] = obj["Size"]
    except (ClientError, BotoCoreError) as exc:
        raise fail(exc) from None
    except Exception as exc:  # boto3's S3UploadFailedError wraps the ClientError in text only
        if type(exc).__name__ == "S3UploadFailedError":
            raise OrchError(f"upload to {uri}{at} failed: {exc}",
                            hint="check the credentials and the bucket; re-running uploads again") from None
        raise
    wrong = [i["path"] for i in listing if stored.get(i["path"]) != i["size"]]
    if wrong:
        raise CheckFailed(f"after the upload to {uri}, these objects are missing or of the wrong size: "
                          + ", ".join(wrong), hint="run the upload again")
    return UploadResult(uri, [i["path"] for i in listing] + ["upload-manifest.json"], total,
                        time.monotonic() - started, endpoint)
