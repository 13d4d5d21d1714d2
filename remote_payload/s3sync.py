"""Sync an S3 prefix into a local models directory: verified, resumable, fast, gzipped text repaired.

    python -m remote_payload.s3sync --source s3://bucket/prefix/ --dest DIR [--endpoint URL] [--region R]
                                    [--creds-stdin] [--progress-json | --json] [--dry-run]

Runs on the instance, inside the payload venv (botocore + the standard library; it never imports
`orchestrator`, and it is self-contained so that the controller may also ship it as `python -c SOURCE`).

What it guarantees:

* It is a sync. `DIR/.orch-weights.json` (the manifest) records, per file, the S3 key, size and ETag, the
  local size, mtime and (for files up to 64 MiB) sha256, and whether it was repaired. A file whose manifest
  entry matches the listing and whose size and mtime on disk match the entry is not read again: a re-run of
  a completed sync makes ONE listing request and no object reads. A file already present without a manifest
  entry (copied by hand, another tool) is adopted when its MD5 matches the ETag, instead of downloaded.
* Nothing truncated ever carries a real name: data goes to `NAME.orch-partial` and is renamed when
  complete. Large objects are fetched as parallel ranged GETs (`--part-size`, `--concurrency`), written in
  place with `pwrite`; the parts already on disk are recorded in the manifest about once a second, so an
  interrupted run (Ctrl-C, SIGTERM, SIGKILL, a dropped SSH session) resumes part by part. A reboot in
  between discards partial state (data not yet flushed may be lost) and re-checks files whose data might
  not have reached the disk.
* Gzip repair: a JSON or text file (by name) whose bytes start with the gzip magic `1f 8b`, whether or not
  S3 stores it with `Content-Encoding: gzip`, is decompressed after download and must then parse as JSON
  (`.json`) or decode as UTF-8; otherwise the sync fails naming the file. botocore never decodes
  `Content-Encoding: gzip` bodies itself, so the stored bytes always arrive as stored. Weights
  (`.safetensors`, `.bin`, ...) are never modified. Each repair is reported.
* Before downloading, free space in DIR is checked against what remains to download; a disk that fills up
  anyway (ENOSPC) removes the partial files and keeps every completed file.

Output: with `--progress-json`, one JSON object per line on stdout (`start`, `progress`, `file`, `repaired`,
`warning`, then `done` or `error`); with `--json`, one summary document at the end; otherwise short lines on
stderr for a person. Exit status: 0 done, 1 runtime failure (access denied, endpoint unreachable, disk full,
corrupt gzip JSON, ...), 2 bad input (bad URI, missing bucket, empty prefix, bad destination), 130 interrupted.

Credentials: the default botocore chain (the instance's role or profile), or with `--creds-stdin` one JSON
line on stdin `{"aws_access_key_id": ..., "aws_secret_access_key": ..., "aws_session_token": ...}`, held in
memory only: never written to disk, never printed.
"""

from __future__ import annotations

import argparse
import difflib
import errno
import fcntl
import gzip
import hashlib
import json
import math
import os
import queue
import re
import shutil
import signal
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

MANIFEST_NAME = ".orch-weights.json"
LOCK_NAME = ".orch-weights.lock"
PARTIAL_SUFFIX = ".orch-partial"
REPAIR_SUFFIX = ".orch-repair"
MANIFEST_VERSION = 1
MiB = 1024 * 1024

DEFAULT_CONCURRENCY = 16
DEFAULT_PART_SIZE = 16 * MiB
MIN_PART_SIZE = 64 * 1024
IO_CHUNK = 128 * 1024                # per socket read + pwrite: stays in the CPU cache (1 MiB cost 2x the CPU)
FILES_IN_FLIGHT = 4                  # large files fetched side by side: fewer writers per file (ext4 serialises
                                     # buffered writes to one file on its inode lock; 16 writers on one file spin)
SHA256_MAX = 64 * MiB                # files up to this size get a local sha256 in the manifest
SPACE_MARGIN = 64 * MiB              # free space kept beyond what the download needs
MANIFEST_SAVE_INTERVAL = 1.0         # seconds between manifest writes while downloading
PROGRESS_INTERVAL = 0.25             # seconds between progress events
DURABLE_AFTER = 35.0                 # seconds after which the kernel has normally written a file back
PART_ATTEMPTS = 4                    # a part whose body breaks off mid-stream is fetched again this often

GZIP_MAGIC = b"\x1f\x8b"
# Files that are text by name: the only ones a gzip repair may touch.
TEXT_SUFFIXES = {".json", ".jsonl", ".txt", ".md", ".jinja", ".jinja2", ".j2", ".py", ".yaml", ".yml",
                 ".csv", ".tsv", ".tiktoken", ".vocab", ".cfg", ".ini", ".toml", ".html", ".xml"}
TEXT_NAMES = {"LICENSE", "NOTICE", "README", "COPYING", "USE_POLICY", "merges", "vocab"}
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*$", re.I)

EXIT_OK, EXIT_FAIL, EXIT_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


# --------------------------------------------------------------------------------------------- errors

class SyncError(Exception):
    """A failure with one clear message (and a hint); exit status 1."""

    exit_code = EXIT_FAIL
    kind = "failed"

    def __init__(self, message: str, hint: str | None = None, kind: str | None = None):
        super().__init__(message)
        self.message, self.hint = message, hint
        if kind:
            self.kind = kind


class InputProblem(SyncError):
    """Bad input (URI, bucket, prefix, destination, options): exit status 2."""

    exit_code = EXIT_INPUT
    kind = "input"


class Interrupted(Exception):
    """SIGINT / SIGTERM / SIGHUP, or the reader of our output went away."""


class _Stop(Exception):
    """Raised inside a worker when the sync is being stopped."""


# ------------------------------------------------------------------------------------------ helpers

def parse_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` -> ("bucket", "some/prefix/"). The prefix always ends with "/" (or is "")."""
    if not uri.startswith("s3://"):
        raise InputProblem(f"--source must be an s3://bucket/prefix/ URI, got {uri!r}")
    bucket, _, prefix = uri[5:].partition("/")
    if not BUCKET_RE.match(bucket) or ".." in bucket:
        raise InputProblem(f"{uri!r}: {bucket!r} is not a valid S3 bucket name")
    prefix = prefix.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"    # a directory of weights: never match "Qwen3-14B-Instruct/" for "Qwen3-14B"
    return bucket, prefix


def parse_size(text: str) -> int:
    """'16MiB', '8M', '512KiB', '1048576' -> bytes (K/M/G are binary)."""
    m = SIZE_RE.match(str(text))
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 16MiB, 512KiB)")
    unit = (m.group(2) or "b").lower()[:1]
    return int(float(m.group(1)) * {"b": 1, "k": 1024, "m": MiB, "g": 1024 * MiB}[unit])


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def is_text_name(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1]
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        return name in TEXT_NAMES
    return f".{suffix.lower()}" in TEXT_SUFFIXES or stem in TEXT_NAMES and suffix.lower() in ("txt", "md")


def safe_relpath(key: str, prefix: str) -> str:
    rel = key[len(prefix):]
    parts = rel.split("/")
    if not rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\x00" in rel:
        raise InputProblem(f"object key {key!r} cannot be written safely under the destination",
                           hint="keys must be relative paths without '.', '..' or empty segments")
    name = parts[-1]
    if name in (MANIFEST_NAME, LOCK_NAME) or name.endswith((PARTIAL_SUFFIX, REPAIR_SUFFIX)) \
            or name.endswith(".orch-tmp"):
        raise InputProblem(f"object key {key!r} collides with a name s3sync uses for itself")
    return rel


def boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip() or None
    except OSError:
        return None


def file_digest(path: str, algo: str = "sha256") -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(8 * MiB), b""):
            h.update(block)
    return h.hexdigest()


def _multipart_candidates(size: int, parts: int) -> list[int]:
    """Part sizes an uploader may have used to produce an ETag 'md5-<parts>' for an object of `size`."""
    guesses = {m * MiB for m in (5, 8, 10, 15, 16, 20, 25, 32, 50, 64, 100, 128, 256, 512, 1024)}
    exact = -(-size // parts)
    guesses |= {exact, -(-exact // MiB) * MiB}
    return sorted(p for p in guesses if p > 0 and -(-size // p) == parts)


def etag_matches_file(path: str, size: int, etag: str) -> bool | None:
    """Does the local file have this S3 ETag? True/False, or None when the ETag is not an MD5 form
    (SSE-KMS, some S3-compatible stores) or the multipart part size cannot be guessed."""
    e = etag.strip('"').lower()
    if re.fullmatch(r"[0-9a-f]{32}", e):
        return file_digest(path, "md5") == e
    m = re.fullmatch(r"([0-9a-f]{32})-(\d+)", e)
    if not m:
        return None
    candidates = _multipart_candidates(size, int(m.group(2)))
    if not candidates:
        return None
    state = {p: [hashlib.md5(), 0, []] for p in candidates}   # current part md5, bytes in it, digests
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(8 * MiB), b""):
            for p, st in state.items():
                view, off = memoryview(block), 0
                while off < len(view):
                    take = min(p - st[1], len(view) - off)
                    st[0].update(view[off:off + take])
                    st[1] += take
                    off += take
                    if st[1] == p:
                        st[2].append(st[0].digest())
                        st[0], st[1] = hashlib.md5(), 0
    for p, st in state.items():
        if st[1]:
            st[2].append(st[0].digest())
        if hashlib.md5(b"".join(st[2])).hexdigest() + f"-{len(st[2])}" == e:
            return True
    return False


def _ranges(done: set[int]) -> str:
    """{0,1,2,5} -> '0-2,5' (compact part lists in the manifest)."""
    out, items = [], sorted(done)
    i = 0
    while i < len(items):
        j = i
        while j + 1 < len(items) and items[j + 1] == items[j] + 1:
            j += 1
        out.append(str(items[i]) if i == j else f"{items[i]}-{items[j]}")
        i = j + 1
    return ",".join(out)


def _parse_ranges(text: str) -> set[int]:
    done: set[int] = set()
    for chunk in filter(None, (text or "").split(",")):
        a, _, b = chunk.partition("-")
        done.update(range(int(a), int(b or a) + 1))
    return done


# ------------------------------------------------------------------------------------------ output

class Reporter:
    """Progress for the controller (JSON lines), a summary document, or plain lines for a person."""

    def __init__(self, mode: str):
        self.mode = mode          # "events" | "json" | "human"
        self.broken = False
        self._lock = threading.Lock()

    def event(self, name: str, /, **fields) -> None:
        if self.mode == "events":
            self._write(json.dumps({"event": name, **fields}, separators=(",", ":")) + "\n")
        elif self.mode == "human":
            line = self._human(name, fields)
            if line:
                sys.stderr.write(line + "\n")
                sys.stderr.flush()

    def document(self, doc: dict) -> None:
        if self.mode == "json":
            self._write(json.dumps(doc, indent=2) + "\n")

    def _write(self, text: str) -> None:
        if self.broken:
            return
        with self._lock:
            try:
                sys.stdout.write(text)
                sys.stdout.flush()
            except (BrokenPipeError, ValueError, OSError):
                # The controller went away (SSH dropped): stop cleanly so that the next run resumes.
                self.broken = True
                try:
                    sys.stdout = open(os.devnull, "w")
                except OSError:
                    pass

    @staticmethod
    def _human(name: str, f: dict) -> str | None:
        if name == "start":
            return (f"s3sync: {f['source']} -> {f['dest']}: {f['files']} files, {human(f['bytes'])}; "
                    f"to download {f['download_files']} files, {human(f['download_bytes'])}")
        if name == "file":
            return f"  {f['path']} ({human(f['bytes'])})"
        if name == "repaired":
            return f"  repaired {f['path']}: was gzip-compressed ({human(f['stored_bytes'])} -> {human(f['bytes'])})"
        if name == "warning":
            return f"  warning: {f['message']}"
        if name == "waiting":
            holder = f.get("holder") or {}
            return f"s3sync: waiting for another deploy (pid {holder.get('pid', '?')}, {holder.get('what', '?')})"
        if name == "done":
            return (f"s3sync: done: {f['downloaded_files']} downloaded ({human(f['downloaded_bytes'])}, "
                    f"{f['rate_mb_s']:.0f} MB/s), {f['skipped_files']} already present, "
                    f"{len(f['repaired'])} repaired, in {f['seconds']:.1f}s")
        return None


# ---------------------------------------------------------------------------------------- S3 client

def read_stdin_credentials() -> dict:
    line = sys.stdin.readline()
    if not line.strip():
        raise InputProblem("--creds-stdin: no credentials on stdin",
                           hint='send one JSON line {"aws_access_key_id": ..., "aws_secret_access_key": ...}')
    try:
        doc = json.loads(line)
        creds = {"aws_access_key_id": str(doc["aws_access_key_id"]),
                 "aws_secret_access_key": str(doc["aws_secret_access_key"])}
    except (ValueError, KeyError, TypeError):
        raise InputProblem("--creds-stdin: stdin is not a JSON line with aws_access_key_id and "
                           "aws_secret_access_key") from None
    if doc.get("aws_session_token"):
        creds["aws_session_token"] = str(doc["aws_session_token"])
    return creds


def make_client(endpoint: str | None, region: str | None, creds: dict | None, concurrency: int):
    try:
        import botocore.session
        from botocore.config import Config
    except ImportError:
        raise SyncError(f"botocore is not installed for {sys.executable}",
                        hint="run `orch deploy` first (it creates the payload venv), or `pip install boto3`",
                        kind="environment") from None
    session = botocore.session.get_session()
    region = region or session.get_config_variable("region") or "us-east-1"
    config = Config(
        region_name=region,
        connect_timeout=5, read_timeout=60,
        retries={"mode": "standard", "max_attempts": 3},
        max_pool_connections=concurrency + 4,
        tcp_keepalive=True,
        user_agent_extra="orch-s3sync",
        s3={"addressing_style": "path"} if endpoint else {},
    )
    return session.create_client("s3", endpoint_url=endpoint or None, config=config, **(creds or {}))


def classify(exc: BaseException, what: str, bucket: str, endpoint: str | None) -> SyncError:
    """Turn a botocore / OS exception into one clear SyncError."""
    from botocore.exceptions import (ClientError, ConnectionError as BotoConnectionError, NoCredentialsError,
                                     PartialCredentialsError, ReadTimeoutError)

    where = endpoint or "AWS S3"
    if isinstance(exc, SyncError):
        return exc
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return SyncError(f"no AWS credentials for {what}",
                         hint="give the instance an IAM role or profile that can read the bucket, or set "
                              "`s3_credentials: forward` on the job to pass the controller's credentials",
                         kind="credentials")
    if isinstance(exc, ReadTimeoutError):
        return SyncError(f"S3 endpoint {where} stopped answering during {what}: {exc}",
                         hint="re-run to resume; check the network", kind="network")
    if isinstance(exc, BotoConnectionError):
        return SyncError(f"cannot reach the S3 endpoint {where} for {what}: {exc}",
                         hint="check the endpoint URL (AWS_ENDPOINT_URL / s3_endpoint) and the network",
                         kind="unreachable")
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code") or "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        msg = err.get("Message") or code
        if code == "NoSuchBucket":
            return InputProblem(f"bucket {bucket!r} does not exist ({where})",
                                hint="check the job's weights URI", kind="no-bucket")
        if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
                    "InvalidToken", "AllAccessDisabled", "AccountProblem", "403") or status == 403:
            return SyncError(f"access denied for {what} ({code or status}: {msg})",
                             hint="the credentials in use cannot read this bucket: check the instance role's "
                                  "s3:ListBucket and s3:GetObject permissions, or use `s3_credentials: forward`",
                             kind="access-denied")
        if code in ("PreconditionFailed", "412") or status == 412:
            return SyncError(f"{what}: the object changed on S3 during the sync",
                             hint="re-run the sync", kind="changed")
        if code in ("NoSuchKey", "404") or status == 404:
            return SyncError(f"{what}: the object disappeared from S3 during the sync",
                             hint="re-run the sync", kind="changed")
        return SyncError(f"S3 error during {what}: {code or status}: {msg}", kind="s3")
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return SyncError(f"disk full while writing {what}", kind="disk-full")
    if isinstance(exc, OSError):
        return SyncError(f"{what}: {exc.strerror or exc}", kind="os")
    return SyncError(f"{what}: {type(exc).__name__}: {exc}", kind="internal")


# ------------------------------------------------------------------------------------------ the sync

class RemoteObject:
    __slots__ = ("key", "rel", "size", "etag")

    def __init__(self, key: str, rel: str, size: int, etag: str):
        self.key, self.rel, self.size, self.etag = key, rel, size, etag


class FileTask:
    """One object being downloaded: its partial file, its parts, which of them are on disk."""

    def __init__(self, obj: RemoteObject, dest: str, part_size: int, done: set[int] | None = None):
        self.obj = obj
        self.final = os.path.join(dest, *obj.rel.split("/"))
        self.partial = self.final + PARTIAL_SUFFIX
        self.part_size = part_size
        self.nparts = max(1, math.ceil(obj.size / part_size))
        self.done: set[int] = set(done or ())
        self.resumed_parts = len(self.done)
        self.whole = self.nparts == 1          # one plain GET (no Range): checksums validated by botocore
        self.fd: int | None = None
        self.lock = threading.Lock()
        self.content_encoding: str | None = None
        self.finishing = False                 # claimed by the one thread that renames it into place
        self.finished = False

    def part_range(self, idx: int) -> tuple[int, int]:
        start = idx * self.part_size
        return start, min(self.obj.size, start + self.part_size) - start

    def open(self) -> int:
        with self.lock:
            if self.fd is None:
                os.makedirs(os.path.dirname(self.final), exist_ok=True)
                fd = os.open(self.partial, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
                if not self.done:
                    os.ftruncate(fd, 0)
                os.ftruncate(fd, self.obj.size)
                self.fd = fd
            return self.fd

    def close(self) -> None:
        with self.lock:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None


class RateLimiter:
    """A shared token bucket (`--max-bandwidth`): workers take bytes before writing them."""

    def __init__(self, rate: float):
        self.rate = rate
        self.burst = rate / 4          # at most a quarter second's worth at once
        self.allowance = 0.0
        self.last: float | None = None
        self.lock = threading.Lock()

    def take(self, n: int) -> None:
        with self.lock:
            now = time.monotonic()
            self.last = now if self.last is None else self.last
            self.allowance = min(self.burst, self.allowance + (now - self.last) * self.rate) - n
            self.last = now
            wait = -self.allowance / self.rate if self.allowance < 0 else 0.0
        if wait > 0:
            time.sleep(wait)


class Syncer:
    def __init__(self, args: argparse.Namespace, reporter: Reporter, creds: dict | None):
        self.args = args
        self.out = reporter
        self.bucket, self.prefix = parse_s3_uri(args.source)
        self.source = f"s3://{self.bucket}/{self.prefix}"
        self.dest = os.path.abspath(args.dest)
        self.endpoint = args.endpoint
        self.concurrency = args.concurrency
        self.part_size = args.part_size
        self.creds = creds
        self.client = None
        self.boot = boot_id()
        self.stop = threading.Event()
        self.events: queue.Queue = queue.Queue()
        self.count_lock = threading.Lock()
        self.bytes_done = 0          # downloaded in this run
        self.tasks_finished = 0
        self.requests: dict[str, int] = {}
        self.limiter = RateLimiter(args.max_bandwidth) if args.max_bandwidth else None
        self.manifest: dict = {}
        self.manifest_dirty = False
        self.repaired: list[dict] = []
        self.warnings: list[str] = []
        self.t0 = time.monotonic()

    # ---- plumbing

    def _count(self, model, **_):
        with self.count_lock:
            self.requests[model.name] = self.requests.get(model.name, 0) + 1

    def connect(self) -> None:
        self.client = make_client(self.endpoint, self.args.region, self.creds, self.concurrency)
        self.client.meta.events.register("before-call.s3", self._count)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self.out.event("warning", message=message)

    # ---- manifest

    def load_manifest(self) -> None:
        path = os.path.join(self.dest, MANIFEST_NAME)
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
            if doc.get("version") != MANIFEST_VERSION or not isinstance(doc.get("files"), dict):
                raise ValueError("unknown manifest version")
        except FileNotFoundError:
            doc = None
        except (OSError, ValueError) as exc:
            self.warn(f"ignoring unreadable manifest {path} ({exc}); files on disk are re-checked")
            doc = None
        if doc and doc.get("source") not in (None, self.source):
            raise InputProblem(
                f"{self.dest} holds weights synced from {doc['source']}, not {self.source}",
                hint="sync into another directory, or delete "
                     f"{os.path.join(self.dest, MANIFEST_NAME)} to adopt the files there (they are checked "
                     "against the ETags first)", kind="dest-mismatch")
        self.manifest = doc or {"version": MANIFEST_VERSION, "source": self.source, "files": {}, "partial": {}}
        self.manifest.setdefault("partial", {})
        self.manifest["source"] = self.source

    def save_manifest(self, force: bool = False) -> None:
        if not (self.manifest_dirty or force):
            return
        self.manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.manifest["endpoint"] = self.endpoint
        path = os.path.join(self.dest, MANIFEST_NAME)
        tmp = path + ".orch-tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(self.manifest, f, indent=1, sort_keys=True)
            os.replace(tmp, path)
            self.manifest_dirty = False
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            if exc.errno != errno.ENOSPC:
                raise
            # Disk full: completed files stay on disk and are adopted by ETag on the next run.

    # ---- listing and plan

    def list_objects(self) -> list[RemoteObject]:
        objects: list[RemoteObject] = []
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for item in page.get("Contents", ()):
                    key = item["Key"]
                    if key.endswith("/"):
                        if item.get("Size", 0):
                            self.warn(f"skipping {key!r}: a key ending in '/' with data")
                        continue      # "folder" markers created by consoles
                    rel = safe_relpath(key, self.prefix)
                    objects.append(RemoteObject(key, rel, int(item["Size"]), str(item.get("ETag") or "")))
        except Exception as exc:  # noqa: BLE001 - classified into one message
            raise classify(exc, f"listing {self.source}", self.bucket, self.endpoint) from None
        if not objects:
            raise InputProblem(f"no objects under {self.source}: the prefix does not exist or is empty",
                               hint=self._suggest(), kind="empty-prefix")
        rels = {}
        for o in objects:
            if o.rel.lower() in rels:
                self.warn(f"{o.key!r} and {rels[o.rel.lower()]!r} differ only in case")
            rels[o.rel.lower()] = o.key
        return objects

    def _suggest(self) -> str:
        """'did you mean' from the parent prefix (one more request, only on this error)."""
        parent = self.prefix.rstrip("/").rpartition("/")[0]
        parent = parent + "/" if parent else ""
        try:
            resp = self.client.list_objects_v2(Bucket=self.bucket, Prefix=parent, Delimiter="/", MaxKeys=1000)
        except Exception:  # noqa: BLE001 - a hint only
            return "check the job's weights URI"
        names = [p["Prefix"] for p in resp.get("CommonPrefixes", ())]
        close = difflib.get_close_matches(self.prefix, names, n=3, cutoff=0.5)
        if close:
            return "did you mean " + " or ".join(f"s3://{self.bucket}/{c}" for c in close) + "?"
        if names:
            return f"prefixes under s3://{self.bucket}/{parent}: " + ", ".join(names[:8])
        return "check the job's weights URI"

    def entry_is_current(self, obj: RemoteObject, entry: dict | None) -> bool:
        if not entry or entry.get("etag") != obj.etag or entry.get("size") != obj.size:
            return False
        final = os.path.join(self.dest, *obj.rel.split("/"))
        try:
            st = os.stat(final)
        except OSError:
            return False
        return st.st_size == entry.get("local_size") and st.st_mtime_ns == entry.get("mtime_ns")

    def make_durable(self, obj: RemoteObject, entry: dict) -> bool:
        """True when the file's bytes are known to be on disk (or were just checked)."""
        if entry.get("durable", True) or self.boot is None:
            return True
        final = os.path.join(self.dest, *obj.rel.split("/"))
        if entry.get("boot") == self.boot:
            if time.time() - entry.get("done_at", 0) < DURABLE_AFTER:
                return True       # same boot, page cache is authoritative; flushed on a later run
            fd = os.open(final, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        else:
            # Written during an earlier boot that may have ended in a crash before writeback: check it.
            self.out.event("verify", path=obj.rel, bytes=entry.get("local_size"))
            if entry.get("sha256"):
                ok = file_digest(final) == entry["sha256"]
            else:
                ok = bool(etag_matches_file(final, obj.size, obj.etag)) and not entry.get("repaired")
            if not ok:
                self.warn(f"{obj.rel} was written before a reboot and does not verify: downloading again")
                return False
        entry["durable"] = True
        self.manifest_dirty = True
        return True

    def adopt(self, obj: RemoteObject) -> bool:
        """A file already on disk without a manifest entry: keep it if its MD5 matches the ETag."""
        final = os.path.join(self.dest, *obj.rel.split("/"))
        try:
            st = os.stat(final)
        except OSError:
            return False
        if not os.path.isfile(final) or st.st_size != obj.size:
            return False
        self.out.event("verify", path=obj.rel, bytes=obj.size)
        if not etag_matches_file(final, obj.size, obj.etag):
            return False
        self.record(obj, final, repaired=None, content_encoding=None, sha=None, durable=True)
        return True

    def record(self, obj, final, *, repaired, content_encoding, sha, durable=False) -> None:
        st = os.stat(final)
        if sha is None and st.st_size <= SHA256_MAX:
            sha = file_digest(final)
        self.manifest["files"][obj.rel] = {
            "key": obj.key, "size": obj.size, "etag": obj.etag, "local_size": st.st_size,
            "mtime_ns": st.st_mtime_ns, "sha256": sha, "repaired": repaired,
            "content_encoding": content_encoding, "boot": self.boot, "done_at": time.time(),
            "durable": durable,
        }
        self.manifest["partial"].pop(obj.rel, None)
        self.manifest_dirty = True

    def plan(self, objects: list[RemoteObject]) -> tuple[list[FileTask], list[RemoteObject]]:
        files = self.manifest["files"]
        todo: list[FileTask] = []
        present: list[RemoteObject] = []
        listed = {o.rel for o in objects}
        for rel in [r for r in files if r not in listed]:
            del files[rel]                 # gone from S3: forget it (the local file is reported as extra)
            self.manifest_dirty = True
        partial_state = self.manifest["partial"]
        for obj in objects:
            entry = files.get(obj.rel)
            if self.entry_is_current(obj, entry) and self.make_durable(obj, entry):
                present.append(obj)
                continue
            if files.pop(obj.rel, None) is not None:
                self.manifest_dirty = True
            if self.adopt(obj):
                present.append(obj)
                continue
            task = FileTask(obj, self.dest, self.part_size, self._resumable(obj, partial_state.get(obj.rel)))
            if not task.done:
                partial_state.pop(obj.rel, None)
            todo.append(task)
        # Small files first (they finish and are recorded quickly), then the shards in key order.
        todo.sort(key=lambda t: (t.nparts > 1, t.obj.rel))
        for stale in set(partial_state) - {t.obj.rel for t in todo}:
            partial_state.pop(stale, None)
        return todo, present

    def _resumable(self, obj: RemoteObject, state: dict | None) -> set[int]:
        if not state or state.get("etag") != obj.etag or state.get("size") != obj.size \
                or state.get("boot") != self.boot or self.boot is None:
            return set()
        part_size = state.get("part_size")
        if part_size != self.part_size:
            return set()
        partial = os.path.join(self.dest, *obj.rel.split("/")) + PARTIAL_SUFFIX
        try:
            if os.path.getsize(partial) != obj.size:
                return set()
        except OSError:
            return set()
        nparts = max(1, math.ceil(obj.size / part_size))
        return {i for i in _parse_ranges(state.get("done", "")) if 0 <= i < nparts}

    def check_space(self, todo: list[FileTask]) -> int:
        need = sum(t.obj.size - sum(t.part_range(i)[1] for i in t.done) for t in todo)
        if self.args.no_space_check or not todo:
            return need
        usage = shutil.disk_usage(self.dest)
        if need + SPACE_MARGIN > usage.free:
            raise SyncError(f"not enough space in {self.dest}: the download needs {human(need)} "
                            f"(+{human(SPACE_MARGIN)} margin), {human(usage.free)} free",
                            hint="free space there, or point the instance's models_dir at a larger volume "
                                 "(never /tmp)", kind="disk-full")
        return need

    # ---- downloading

    def fetch_part(self, task: FileTask, idx: int) -> None:
        try:
            self._fetch_part(task, idx)
        finally:
            with self.count_lock:
                self.tasks_finished += 1

    def _fetch_part(self, task: FileTask, idx: int) -> None:
        if self.stop.is_set():
            return
        start, length = task.part_range(idx)
        for attempt in range(1, PART_ATTEMPTS + 1):
            written = 0
            try:
                written = self._get_range(task, start, length)
                break
            except _Stop:
                self._uncount(written)
                return
            except Exception as exc:  # noqa: BLE001
                transient = isinstance(exc, _transient_errors())
                if not transient or attempt == PART_ATTEMPTS or self.stop.is_set():
                    self.events.put(("error", task, exc))
                    self.stop.set()
                    return
                time.sleep(0.2 * 2 ** attempt)
        with task.lock:
            task.done.add(idx)
            complete = len(task.done) == task.nparts and not task.finishing
            task.finishing = task.finishing or complete
        if complete:
            try:
                info = self.finish_file(task)
            except Exception as exc:  # noqa: BLE001
                self.events.put(("error", task, exc))
                self.stop.set()
                return
            self.events.put(("file", task, info))
        else:
            self.events.put(("part", task, idx))

    def _uncount(self, n: int) -> None:
        with self.count_lock:
            self.bytes_done -= n

    def _get_range(self, task: FileTask, start: int, length: int) -> int:
        if length == 0:
            task.open()
            return 0
        fd = task.open()
        kwargs = {"Bucket": self.bucket, "Key": task.obj.key}
        if not task.whole:
            kwargs["Range"] = f"bytes={start}-{start + length - 1}"
        if task.obj.etag:
            kwargs["IfMatch"] = task.obj.etag
        resp = self.client.get_object(**kwargs)
        if resp.get("ContentEncoding"):
            task.content_encoding = resp["ContentEncoding"]
        if int(resp.get("ContentLength", -1)) != length:
            resp["Body"].close()
            raise _ShortBody(f"expected {length} bytes, the server sends {resp.get('ContentLength')}")
        body = resp["Body"]
        pos, written = start, 0
        fast = _fast_reader(body) if not task.whole else None
        try:
            if fast is not None:
                buf = bytearray(IO_CHUNK)
                view = memoryview(buf)
                while written < length:
                    if self.stop.is_set():
                        raise _Stop
                    want = min(IO_CHUNK, length - written)
                    got = fast.readinto(view[:want])
                    if not got:
                        raise _ShortBody(f"connection closed after {written} of {length} bytes")
                    self._write(fd, view[:got], pos)
                    pos += got
                    written += got
                body._raw_stream.release_conn()
            else:
                while True:
                    if self.stop.is_set():
                        raise _Stop
                    chunk = body.read(IO_CHUNK)   # validates length (and checksums, when sent)
                    if not chunk:
                        break
                    self._write(fd, chunk, pos)
                    pos += len(chunk)
                    written += len(chunk)
                if written != length:
                    raise _ShortBody(f"got {written} of {length} bytes")
        except BaseException:
            body.close()
            self._uncount(written)
            raise
        return written

    def _write(self, fd: int, data, pos: int) -> None:
        if self.limiter:
            self.limiter.take(len(data))
        view = memoryview(data)
        while view:
            n = os.pwrite(fd, view, pos)
            view, pos = view[n:], pos + n
        with self.count_lock:
            self.bytes_done += len(data)

    def finish_file(self, task: FileTask) -> dict:
        """All parts are on disk: check the size, repair gzipped text, rename into place."""
        fd = task.open()
        size = os.fstat(fd).st_size
        task.close()
        if size != task.obj.size:
            raise SyncError(f"{task.obj.rel}: {size} bytes on disk, S3 lists {task.obj.size}")
        repaired = self.maybe_repair(task)
        source = task.partial
        sha = None
        if repaired:
            source, sha = repaired["tmp"], repaired["sha256"]
        os.replace(source, task.final)
        if repaired:
            os.unlink(task.partial)
        task.finished = True
        return {"repaired": repaired, "sha256": sha}

    def maybe_repair(self, task: FileTask) -> dict | None:
        rel = task.obj.rel
        if task.obj.size < 2:
            return None
        with open(task.partial, "rb") as f:
            head = f.read(2)
        if head != GZIP_MAGIC:
            return None
        if not is_text_name(rel):
            self.warn(f"{rel} starts with the gzip magic bytes; it is not a text file, so it is kept as stored")
            return None
        with open(task.partial, "rb") as f:
            data = f.read()
        layers = 0
        try:
            while data[:2] == GZIP_MAGIC and layers < 3:
                data = gzip.decompress(data)
                layers += 1
        except (OSError, EOFError, zlib.error) as exc:
            raise SyncError(f"{rel} is stored gzip-compressed but does not decompress: {exc}",
                            hint="re-upload the file to S3 (uncompressed)", kind="corrupt") from None
        try:
            text = data.decode("utf-8")
            if rel.lower().endswith(".json"):
                json.loads(text)
        except UnicodeDecodeError as exc:
            raise SyncError(f"{rel} was gzip-compressed and is not UTF-8 text after decompressing: {exc}",
                            hint="re-upload the file to S3", kind="corrupt") from None
        except ValueError as exc:
            raise SyncError(f"{rel} was gzip-compressed and is not valid JSON after decompressing: {exc}",
                            hint="re-upload the file to S3", kind="corrupt") from None
        tmp = task.final + REPAIR_SUFFIX
        with open(tmp, "wb") as f:
            f.write(data)
        return {"path": rel, "encoding": "gzip", "layers": layers, "content_encoding": task.content_encoding,
                "stored_bytes": task.obj.size, "bytes": len(data), "tmp": tmp,
                "sha256": hashlib.sha256(data).hexdigest()}

    def cleanup_partials(self, tasks: list[FileTask]) -> None:
        for t in tasks:
            t.close()
            if not t.finished:
                for path in (t.partial, t.final + REPAIR_SUFFIX):
                    try:
                        os.unlink(path)
                    except FileNotFoundError:
                        pass
                self.manifest["partial"].pop(t.obj.rel, None)
                self.manifest_dirty = True

    def tidy_partials(self, tasks: list[FileTask]) -> None:
        """On the way out: partial files without recorded parts are useless to a re-run: remove them."""
        for t in tasks:
            t.close()
            if not t.finished and not (t.nparts > 1 and t.done):
                for path in (t.partial, t.final + REPAIR_SUFFIX):
                    try:
                        os.unlink(path)
                    except FileNotFoundError:
                        pass

    def remember_partial(self, task: FileTask) -> None:
        with task.lock:
            done = set(task.done)
        if task.nparts > 1 and done and not task.finished:
            self.manifest["partial"][task.obj.rel] = {
                "key": task.obj.key, "size": task.obj.size, "etag": task.obj.etag, "part_size": task.part_size,
                "done": _ranges(done), "boot": self.boot}
            self.manifest_dirty = True

    def download(self, todo: list[FileTask], totals: dict) -> dict:
        pending = {t.obj.rel: t for t in todo}
        done_files = totals["present_files"]
        resumed_bytes = sum(sum(t.part_range(i)[1] for i in t.done) for t in todo)
        base_done = totals["present_bytes"] + resumed_bytes
        error: tuple | None = None
        last_progress = last_save = time.monotonic()
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="s3sync")
        try:
            submitted = 0
            order: list[tuple[FileTask, int]] = []
            window: list[tuple[FileTask, list[int]]] = []
            for task in todo:
                # Decide from the state before submitting: workers add to task.done as soon as they start.
                missing = [idx for idx in range(task.nparts) if idx not in task.done]
                if not missing:          # every part was on disk already: only the rename is left
                    pool.submit(self._finish_only, task)
                    submitted += 1
                elif task.nparts == 1:
                    order.append((task, 0))
                else:
                    window.append((task, missing))
            # Small files first; then the large ones FILES_IN_FLIGHT at a time, their parts interleaved.
            for start in range(0, len(window), FILES_IN_FLIGHT):
                group = window[start:start + FILES_IN_FLIGHT]
                for k in range(max(len(m) for _, m in group)):
                    order += [(t, m[k]) for t, m in group if k < len(m)]
            for task, idx in order:
                pool.submit(self.fetch_part, task, idx)
                submitted += 1
            while pending and error is None:
                try:
                    kind, task, payload = self.events.get(timeout=0.2)
                except queue.Empty:
                    kind = None
                    if self.tasks_finished == submitted and self.events.empty():
                        raise SyncError(f"internal error: {len(pending)} file(s) never completed: "
                                        + ", ".join(sorted(pending)[:5]), kind="internal")
                if kind == "error":
                    error = (task, payload)
                    break
                if kind == "part":
                    self.remember_partial(task)
                elif kind == "file":
                    info = payload
                    rep = info["repaired"]
                    ce = task.content_encoding
                    self.record(task.obj, task.final, repaired="gzip" if rep else None, content_encoding=ce,
                                sha=info["sha256"])
                    if rep:
                        shown = {k: v for k, v in rep.items() if k not in ("tmp", "sha256")}
                        self.repaired.append(shown)
                        self.out.event("repaired", **shown)
                    pending.pop(task.obj.rel, None)
                    done_files += 1
                    self.out.event("file", path=task.obj.rel, bytes=task.obj.size,
                                   files_done=done_files, files_total=totals["files"])
                now = time.monotonic()
                if self.out.broken:
                    raise Interrupted("the controller stopped reading")
                if now - last_progress >= PROGRESS_INTERVAL:
                    last_progress = now
                    self.out.event("progress", bytes_done=base_done + self.bytes_done, bytes_total=totals["bytes"],
                                   files_done=done_files, files_total=totals["files"],
                                   downloaded_bytes=self.bytes_done)
                if now - last_save >= MANIFEST_SAVE_INTERVAL:
                    last_save = now
                    self.save_manifest()
        except BaseException:
            self.stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            self._drain_parts()
            self.tidy_partials(todo)
            self.save_manifest()
            raise
        if error is not None:
            self.stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            self._drain_parts()
            task, exc = error
            failure = classify(exc, task.obj.rel, self.bucket, self.endpoint)
            if failure.kind == "disk-full":
                # Free what the partial files hold; completed files are kept (and recorded).
                self.cleanup_partials(todo)
                kept = sum(1 for t in todo if t.finished) + totals["present_files"]
                failure = SyncError(
                    f"disk full in {self.dest} while writing {task.obj.rel}: partial files removed, "
                    f"{kept} complete files kept", hint="free space (or give models_dir a larger volume), "
                    "then re-run: completed files are not downloaded again", kind="disk-full")
            elif failure.kind in ("corrupt", "os", "internal"):
                self.cleanup_partials([task])   # the others keep their parts for the next run
            self.tidy_partials(todo)
            self.save_manifest()
            raise failure
        pool.shutdown(wait=True)
        self.save_manifest()
        return {"done_files": done_files, "resumed_bytes": resumed_bytes}

    def _finish_only(self, task: FileTask) -> None:
        """A task whose parts were all on disk already (killed just before its rename)."""
        task.finishing = True
        try:
            self.events.put(("file", task, self.finish_file(task)))
        except Exception as exc:  # noqa: BLE001
            self.events.put(("error", task, exc))
            self.stop.set()
        finally:
            with self.count_lock:     # after the event: the watchdog never sees a finished task without it
                self.tasks_finished += 1

    def _drain_parts(self) -> None:
        """Record parts and files that completed while stopping, so a re-run does not fetch them again."""
        while True:
            try:
                kind, task, payload = self.events.get_nowait()
            except queue.Empty:
                return
            if kind == "part":
                self.remember_partial(task)
            elif kind == "file":
                self.record(task.obj, task.final, repaired="gzip" if payload["repaired"] else None,
                            content_encoding=task.content_encoding, sha=payload["sha256"])

    # ---- the whole run

    def extra_files(self, objects: list[RemoteObject]) -> list[str]:
        listed = {o.rel for o in objects}
        extra = []
        for root, dirs, names in os.walk(self.dest):
            for name in names:
                if name in (MANIFEST_NAME, LOCK_NAME) or name.endswith((PARTIAL_SUFFIX, ".orch-tmp", REPAIR_SUFFIX)):
                    continue
                rel = os.path.relpath(os.path.join(root, name), self.dest).replace(os.sep, "/")
                if rel not in listed:
                    extra.append(rel)
        return sorted(extra)

    def run(self) -> dict:
        self.connect()
        objects = self.list_objects()
        self.load_manifest()
        todo, present = self.plan(objects)
        totals = {"files": len(objects), "bytes": sum(o.size for o in objects),
                  "present_files": len(present), "present_bytes": sum(o.size for o in present)}
        need = self.check_space(todo)
        self.out.event("start", source=self.source, dest=self.dest, files=totals["files"], bytes=totals["bytes"],
                       download_files=len(todo), download_bytes=need, present_files=len(present),
                       resumed_files=sum(1 for t in todo if t.done), concurrency=self.concurrency,
                       part_size=self.part_size)
        result = {"done_files": len(present), "resumed_bytes": 0}
        if self.args.dry_run:
            pass                          # nothing written
        elif todo:
            t_dl = time.monotonic()
            result = self.download(todo, totals)
            dl_seconds = time.monotonic() - t_dl
        else:
            self.save_manifest()
        seconds = time.monotonic() - self.t0
        extra = self.extra_files(objects)
        if extra:
            self.warn(f"{len(extra)} local file(s) in {self.dest} are not in {self.source}: "
                      + ", ".join(extra[:5]) + (" ..." if len(extra) > 5 else ""))
        downloaded = 0 if self.args.dry_run else len(todo)
        summary = {
            "ok": True, "source": self.source, "dest": self.dest, "endpoint": self.endpoint,
            "files": totals["files"], "bytes": totals["bytes"],
            "downloaded_files": downloaded, "downloaded_bytes": self.bytes_done,
            "skipped_files": len(present), "skipped_bytes": totals["present_bytes"],
            "resumed_files": sum(1 for t in todo if t.resumed_parts), "resumed_bytes": result["resumed_bytes"],
            "to_download_files": len(todo), "to_download_bytes": need,
            "repaired": self.repaired, "warnings": self.warnings, "extra_local_files": extra,
            "seconds": round(seconds, 3),
            "download_seconds": round(dl_seconds, 3) if todo and not self.args.dry_run else 0.0,
            "rate_mb_s": round(self.bytes_done / 1e6 / max(seconds, 1e-6), 1),
            "requests": dict(sorted(self.requests.items())), "manifest": os.path.join(self.dest, MANIFEST_NAME),
            "dry_run": bool(self.args.dry_run),
        }
        self.out.event("done", **summary)
        self.out.document(summary)
        return summary


class _ShortBody(Exception):
    """The body ended early or the server sent a different length: the part is fetched again."""


def _transient_errors() -> tuple:
    """Errors after which a part is fetched again: the body broke off, the connection dropped or timed out.
    (Builtin ConnectionError/TimeoutError come from the socket read; a full disk (ENOSPC) is not one.)"""
    import http.client

    from botocore.exceptions import (ConnectionError as BotoConnectionError, IncompleteReadError,
                                     ReadTimeoutError, ResponseStreamingError)
    return (IncompleteReadError, ResponseStreamingError, ReadTimeoutError, BotoConnectionError, _ShortBody,
            ConnectionError, TimeoutError, http.client.HTTPException)


def _fast_reader(body):
    """The http.client response under botocore's StreamingBody, read with readinto: one copy from the
    socket into our buffer instead of three. Used for ranged part GETs (S3 sends no checksum for those);
    falls back to the public `read()` when the layout is not the one expected."""
    raw = getattr(body, "_raw_stream", None)
    fp = getattr(raw, "_fp", None)
    if fp is None or not hasattr(fp, "readinto") or getattr(raw, "_decoder", None) is not None \
            or not hasattr(raw, "release_conn"):
        return None
    if getattr(raw, "_has_decoded_content", False):
        return None
    return fp


# ------------------------------------------------------------------------------------------- main

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


def _deploy_lock(path: str | None, out: "Reporter"):
    """The instance's deploy lock (remote_payload/install.py), so that deploys serialise; or nothing."""
    import contextlib

    if not path:
        return contextlib.nullcontext()
    from .install import DeployLock

    return DeployLock(path, {"what": "weights sync", "source": "s3sync"},
                      on_event=lambda name, **fields: out.event(name, **fields) if name == "waiting" else None)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    mode = "events" if args.progress_json else "json" if args.json else "human"
    out = Reporter(mode)

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
        _fail(out, exc.message, exc.hint, exc.kind, exc.exit_code)
        return exc.exit_code
    except (Interrupted, KeyboardInterrupt) as exc:
        _fail(out, f"interrupted ({exc or 'SIGINT'}); parts already on disk are kept: re-run to resume",
              None, "interrupted", EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED
    finally:
        if lock_fd is not None:
            os.close(lock_fd)


def _fail(out: Reporter, message: str, hint: str | None, kind: str, code: int) -> None:
    out.event("error", message=message, hint=hint, kind=kind, exit_code=code)
    out.document({"ok": False, "error": message, "hint": hint, "kind": kind, "exit_code": code})
    sys.stderr.write(f"s3sync: error: {message}\n" + (f"  hint: {hint}\n" if hint else ""))
    sys.stderr.flush()


if __name__ == "__main__":
    sys.exit(main())
