"""`orch sync-weights`: the job's `s3://` weights onto the instance, fetched by the instance itself.

The controller never moves weight bytes. It runs `python -m remote_payload.s3sync` (the package) on the instance (one command
through the transport), reads its JSON progress lines and shows a progress bar (bytes, rate, files) on
stderr, and returns the sync's summary. Downstream code only ever sees the local path
(`local_weights_path`): `models_dir/<last part of the S3 prefix>`, never `s3://` and never /tmp.

Also here, for preflight: `list_weights(uri, s3)` lists the prefix from the controller
(files, bytes), so the disk check knows how much room the weights need.

Credentials: by default the instance uses its own role or profile. With `s3_credentials: forward` on the
job, the controller's credentials (`S3Settings.credentials`) are written to that one remote command's stdin
(never its command line or environment, never the instance's disk, never printed). Endpoint and region are
the ones the inventory resolved (`Inventory.s3_settings`, order documented in s3.py).
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass
from typing import Any, Callable

from .errors import CheckFailed, InputError, OrchError, RemoteError
from .s3 import S3Settings

S3SYNC_MODULE = "remote_payload.s3sync"
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


# ------------------------------------------------------------------------------------------ naming

def parse_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/a/b` -> ("bucket", "a/b/"): the prefix is a folder, so it always ends with '/'."""
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise InputError(f"weights must be an s3://bucket/prefix/ URI, got {uri!r}")
    bucket, _, prefix = uri[5:].partition("/")
    if not BUCKET_RE.match(bucket):
        raise InputError(f"{uri!r}: {bucket!r} is not a valid S3 bucket name")
    prefix = prefix.lstrip("/")
    return bucket, (prefix if not prefix or prefix.endswith("/") else prefix + "/")


def weights_name(uri: str) -> str:
    """The folder name the weights get on the instance: the prefix's last part (or the bucket)."""
    bucket, prefix = parse_s3_uri(uri)
    name = prefix.rstrip("/").rsplit("/", 1)[-1] or bucket
    if name in (".", "..") or "\x00" in name:
        raise InputError(f"{uri!r}: cannot name a local folder after {name!r}")
    return name


def local_weights_path(instance, job) -> str:
    """Where the job's weights live on the instance (what the payload's --model-dir gets)."""
    return posixpath.join(instance.models_dir.rstrip("/") or "/", weights_name(job.weights))


# ------------------------------------------------------------------------- controller-side listing

def list_weights(uri: str, s3: S3Settings) -> tuple[int, int]:
    """(files, total bytes) under the job's prefix, listed with the controller's S3 settings.

    Raises InputError (bucket missing, empty prefix) or CheckFailed (access denied, no credentials,
    endpoint unreachable), each naming the URI and what to check."""
    bucket, prefix = parse_s3_uri(uri)
    files = total = 0
    try:
        client = s3.client()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", ()):
                if item["Key"].endswith("/"):
                    continue
                files += 1
                total += int(item["Size"])
    except Exception as exc:  # noqa: BLE001 - turned into one clear error
        raise _listing_error(exc, uri, s3) from None
    if not files:
        raise InputError(f"no objects under {uri}: the prefix does not exist or is empty",
                         hint="check the job's `weights` URI")
    return files, total


def _listing_error(exc: Exception, uri: str, s3: S3Settings) -> OrchError:
    from botocore.exceptions import ClientError, NoCredentialsError, PartialCredentialsError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    where = s3.endpoint or "AWS S3"
    if isinstance(exc, OrchError):
        return exc
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return CheckFailed(f"no AWS credentials on this machine to list {uri}",
                           hint="put AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in .env (or configure a profile)")
    if isinstance(exc, BotoConnectionError):
        origin = f" (the endpoint comes from {s3.origins['endpoint']})" if s3.origins.get("endpoint") else ""
        return CheckFailed(f"cannot reach the S3 endpoint {where} to list {uri}: {exc}",
                           hint=f"check s3_endpoint / AWS_ENDPOINT_URL{origin} and the network")
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code") or "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == "NoSuchBucket":
            return InputError(f"bucket of {uri} does not exist ({where})", hint="check the job's `weights` URI")
        if status == 403 or code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"):
            return CheckFailed(f"access denied listing {uri} ({code or status})",
                               hint="these credentials need s3:ListBucket on the bucket")
        return CheckFailed(f"listing {uri} failed: {code or status}: {err.get('Message') or ''}".rstrip(": "))
    return CheckFailed(f"listing {uri} failed: {type(exc).__name__}: {exc}")


# ------------------------------------------------------------------------------- the remote command

def s3sync_args(instance, job, s3: S3Settings, *, forward: bool = False, dry_run: bool = False,
                lock: str | None = None, source: str | None = None, dest: str | None = None) -> list[str]:
    """`source`/`dest`: another prefix than the job's weights (a stage-2 parent adapter) and where it goes."""
    args = ["--source", source or job.weights, "--dest", dest or local_weights_path(instance, job), "--progress-json"]
    if lock:
        args += ["--lock", lock]
    if s3.endpoint:
        args += ["--endpoint", s3.endpoint]
    if s3.region:
        args += ["--region", s3.region]
    if forward:
        args.append("--creds-stdin")
    if dry_run:
        args.append("--dry-run")
    return args


# --------------------------------------------------------------------------------------- the sync

@dataclass
class _Progress:
    """A rich progress bar on stderr (bytes, rate, files), or plain lines when stderr is not a terminal."""

    enabled: bool
    say: Callable[[str], None]

    def __post_init__(self):
        self.bar = None
        self.task = None
        self.files_total = 0

    def start(self, ev: dict) -> None:
        self.files_total = ev["files"]
        already = ev.get("present_files", 0)
        self.say(f"weights {ev['source']} -> {ev['dest']}: {ev['files']} files, {_mb(ev['bytes'])}; "
                 f"{ev['download_files']} to download ({_mb(ev['download_bytes'])})"
                 + (f", {already} already there" if already else ""))
        if not self.enabled or not ev["download_files"]:
            return
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                   TransferSpeedColumn)

        from .output import console

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                            TransferSpeedColumn(), TextColumn("{task.fields[files]}"), TimeRemainingColumn(),
                            console=console(), transient=False)
        self.bar.start()
        self.task = self.bar.add_task("weights", total=ev["bytes"], completed=ev["bytes"] - ev["download_bytes"],
                                      files=f"{already}/{self.files_total} files")

    def update(self, ev: dict) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=ev["bytes_done"],
                            files=f"{ev['files_done']}/{ev['files_total']} files")

    def file(self, ev: dict) -> None:
        if self.bar is not None:
            self.bar.update(self.task, files=f"{ev['files_done']}/{ev['files_total']} files")

    def note(self, text: str) -> None:
        if self.bar is not None:
            self.bar.console.print(text, markup=False, highlight=False)
        else:
            self.say(text)

    def stop(self, done: dict | None) -> None:
        if self.bar is not None:
            if done:
                self.bar.update(self.task, completed=done["bytes"],
                                files=f"{done['files']}/{done['files']} files")
            self.bar.stop()
            self.bar = None


def _mb(n: float) -> str:
    from .output import human_bytes

    return human_bytes(n)


def sync_weights(transport, instance, job, s3: S3Settings, *, python: str, cwd: str, lock: str | None = None,
                 progress: bool = True, dry_run: bool = False, say: Callable[[str], None] | None = None,
                 source: str | None = None, dest: str | None = None) -> dict[str, Any]:
    """Run `python -m remote_payload.s3sync` in the payload folder `cwd` on the instance and return its summary
    (the `done` event). With `lock` (the instance's deploy lock) the sync waits for other deploys.

    Raises InputError (exit 2) for bad input reported by the instance (bucket, prefix, destination),
    CheckFailed/RemoteError (exit 1) otherwise."""
    from .output import console
    from .output import say as default_say

    say = say or default_say
    forward = job.s3_credentials == "forward"
    creds = s3.credentials() if forward else None
    args = s3sync_args(instance, job, s3, forward=forward, dry_run=dry_run, lock=lock, source=source, dest=dest)
    bar = _Progress(enabled=progress and console().is_terminal, say=say if progress else (lambda _m: None))
    proc = transport.open([python, "-m", S3SYNC_MODULE, *args], cwd=cwd)
    done: dict | None = None
    error: dict | None = None
    try:
        if creds is not None:
            proc.write((json.dumps(creds) + "\n").encode())
        proc.close_stdin()
        while True:
            line = proc.readline()
            if not line:
                break
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if not isinstance(ev, dict):
                continue
            kind = ev.pop("event", None)
            if kind == "start":
                bar.start(ev)
            elif kind == "progress":
                bar.update(ev)
            elif kind == "file":
                bar.file(ev)
            elif kind == "repaired":
                bar.note(f"  repaired {ev['path']}: it was stored gzip-compressed"
                         + (" (Content-Encoding: gzip)" if ev.get("content_encoding") else "")
                         + f", {ev['stored_bytes']} -> {ev['bytes']} bytes")
            elif kind == "warning":
                bar.note(f"  warning: {ev['message']}")
            elif kind == "waiting":
                holder = ev.get("holder") or {}
                bar.note(f"  waiting for another deploy on {instance.name} (job {holder.get('job', '?')}, "
                         f"pid {holder.get('pid', '?')}) before syncing the weights")
            elif kind == "verify":
                bar.note(f"  checking {ev['path']} against its ETag (already on disk, not yet verified)")
            elif kind == "done":
                done = ev
            elif kind == "error":
                error = ev
        code = proc.wait(60)
    except BaseException:
        proc.kill()     # Ctrl-C: the instance stops too; what it fetched is kept and resumed next time
        bar.stop(None)
        raise
    bar.stop(done)
    if code == 0 and done is not None:
        done.pop("event", None)
        return done
    raise _remote_failure(instance, code, error, proc.stderr_text())


def _remote_failure(instance, code: int, error: dict | None, stderr: str) -> OrchError:
    name = instance.name
    if error:
        message, hint = f"{name}: weights sync failed: {error['message']}", error.get("hint")
        if error.get("exit_code") == 2 or code == 2:
            return InputError(message, hint)
        if error.get("kind") in ("unreachable", "network", "interrupted"):
            return RemoteError(message, hint)
        return CheckFailed(message, hint)
    tail = "\n    ".join(stderr.strip().splitlines()[-6:]) or "(no output on stderr)"
    if "No module named" in stderr or code == 127:
        return RemoteError(f"{name}: cannot run the weights sync there (exit {code}):\n    {tail}",
                           hint="it needs Python 3 with boto3: run `orch deploy` (it builds the payload venv), "
                                f"or set instances.{name}.python_env to an env that has boto3")
    return RemoteError(f"{name}: the weights sync exited with {code}:\n    {tail}")
