"""`python -m remote_payload.s3sync`: arguments, the destination and deploy locks, signals, exit status."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import signal

from .client import read_stdin_credentials
from .errors import EXIT_INTERRUPTED, EXIT_OK, InputProblem, Interrupted, SyncError
from .names import LOCK_NAME, MiB, parse_size
from .report import Reporter
from .syncer import Syncer

DEFAULT_CONCURRENCY = 16
DEFAULT_PART_SIZE = 16 * MiB
MIN_PART_SIZE = 64 * 1024


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m remote_payload.s3sync",
                                description="Sync an s3:// prefix into a local models directory.")
    p.add_argument("--source", required=True, help="s3://bucket/prefix/")
    p.add_argument("--dest", required=True, help="local directory (a models dir, not /tmp)")
    p.add_argument("--endpoint", default=None,
                   help="S3 endpoint URL (MinIO, R2, Ceph, tests); orch passes the one its inventory resolved")
    p.add_argument("--region", default=None, help="bucket region [default: the configured region or us-east-1]")
    p.add_argument("--creds-stdin", action="store_true", help="read credentials as one JSON line on stdin")
    p.add_argument("--lock", default=None,
                   help="the instance's deploy lock: wait for other deploys, hold it while syncing")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--progress-json", action="store_true", help="JSON lines on stdout: start/progress/file/done")
    out.add_argument("--json", action="store_true", help="one JSON summary on stdout")
    p.add_argument("--dry-run", action="store_true", help="list and plan only; download nothing")
    p.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY,
                   help=f"parallel requests [default: {DEFAULT_CONCURRENCY}]")
    p.add_argument("--part-size", type=parse_size, default=DEFAULT_PART_SIZE,
                   help=f"bytes per ranged GET for large objects [default: {DEFAULT_PART_SIZE // MiB}MiB]")
    p.add_argument("--max-bandwidth", type=parse_size, default=None,
                   help="limit the download rate, in bytes per second (e.g. 50MiB)")
    p.add_argument("--no-space-check", action="store_true", help="skip the free-space check before downloading")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Reporter("events" if args.progress_json else "json" if args.json else "human")
    interrupted = []

    def interrupt(signum, _frame):
        if interrupted:
            return          # already stopping: let the cleanup (saving the manifest) finish
        interrupted.append(signum)
        raise Interrupted(signal.Signals(signum).name)

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, interrupt)
    lock_fd = None
    try:
        if args.concurrency < 1 or args.concurrency > 256:
            raise InputProblem("--concurrency must be between 1 and 256")
        if args.part_size < MIN_PART_SIZE:
            raise InputProblem(f"--part-size must be at least {MIN_PART_SIZE // 1024}KiB")
        creds = read_stdin_credentials() if args.creds_stdin else None
        syncer = Syncer(args, out, creds)
        with _deploy_lock(args.lock, out):
            _prepare_dest(syncer.dest)
            lock_fd = _lock(syncer.dest)
            syncer.run()
        return EXIT_OK
    except SyncError as exc:
        out.fail(exc.message, exc.hint, exc.kind, exc.exit_code)
        return exc.exit_code
    except (Interrupted, KeyboardInterrupt) as exc:
        out.fail(f"interrupted ({exc or 'SIGINT'}); parts already on disk are kept: re-run to resume",
                 None, "interrupted", EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED
    finally:
        if lock_fd is not None:
            os.close(lock_fd)


def _prepare_dest(path: str) -> None:
    if os.path.exists(path) and not os.path.isdir(path):
        raise InputProblem(f"--dest {path} exists and is not a directory")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise InputProblem(f"cannot create --dest {path}: {exc.strerror}") from None
    if not os.access(path, os.W_OK):
        raise InputProblem(f"--dest {path} is not writable by this user")


def _lock(dest: str) -> int:
    fd = os.open(os.path.join(dest, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise SyncError(f"another s3sync is writing into {dest}", hint="wait for it to finish, then re-run",
                        kind="busy") from None
    return fd


def _deploy_lock(path: str | None, out: Reporter):
    """The instance's deploy lock (remote_payload/install.py), so that deploys serialise; or nothing."""
    if not path:
        return contextlib.nullcontext()
    from ..install import DeployLock

    return DeployLock(path, {"what": "weights sync", "source": "s3sync"},
                      on_event=lambda name, **fields: out.event(name, **fields) if name == "waiting" else None)
