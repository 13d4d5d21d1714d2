"""Objects into partial files: a whole GET for small objects, parallel ranged GETs written in place with
`pwrite` for large ones, parts recorded as they land, renamed into place (after any repair) when complete."""

from __future__ import annotations

import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from .client import fast_reader
from .errors import Interrupted, ShortBody, Stop, SyncError, classify, transient_errors
from .manifest import Manifest
from .names import REPAIR_SUFFIX
from .plan import FileTask
from .repair import repair_gzipped_text

IO_CHUNK = 128 * 1024                # per socket read + pwrite: stays in the CPU cache (1 MiB cost 2x the CPU)
FILES_IN_FLIGHT = 4                  # large files fetched side by side: fewer writers per file (ext4 serialises
                                     # buffered writes to one file on its inode lock; 16 writers on one file spin)
MANIFEST_SAVE_INTERVAL = 1.0         # seconds between manifest writes while downloading
PROGRESS_INTERVAL = 0.25             # seconds between progress events
PART_ATTEMPTS = 4                    # a part whose body breaks off mid-stream is fetched again this often


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


def submission_order(todo: list[FileTask]) -> tuple[list[FileTask], list[tuple[FileTask, int]]]:
    """(tasks with every part on disk already, (task, part) in the order to fetch): small files first; then the
    large ones FILES_IN_FLIGHT at a time, their parts interleaved. Decided before anything is submitted:
    workers add to task.done as soon as they start."""
    complete, order, window = [], [], []
    for task in todo:
        missing = [idx for idx in range(task.nparts) if idx not in task.done]
        if not missing:
            complete.append(task)
        elif task.nparts == 1:
            order.append((task, 0))
        else:
            window.append((task, missing))
    for start in range(0, len(window), FILES_IN_FLIGHT):
        group = window[start:start + FILES_IN_FLIGHT]
        for k in range(max(len(m) for _, m in group)):
            order += [(t, m[k]) for t, m in group if k < len(m)]
    return complete, order


class Downloader:
    def __init__(self, client, bucket: str, endpoint: str | None, dest: str, manifest: Manifest, out, warn, *,
                 concurrency: int, limiter: RateLimiter | None):
        self.client, self.bucket, self.endpoint, self.dest = client, bucket, endpoint, dest
        self.manifest, self.out, self.warn = manifest, out, warn
        self.concurrency, self.limiter = concurrency, limiter
        self.stop = threading.Event()
        self.events: queue.Queue = queue.Queue()
        self.count_lock = threading.Lock()
        self.bytes_done = 0          # downloaded in this run
        self.tasks_finished = 0
        self.repaired: list[dict] = []

    # ---- the loop

    def run(self, todo: list[FileTask], totals: dict) -> dict:
        pending = {t.obj.rel: t for t in todo}
        progress = {"files_done": totals["present_files"], "files_total": totals["files"],
                    "bytes_total": totals["bytes"]}
        resumed_bytes = sum(t.bytes_on_disk() for t in todo)
        base_done = totals["present_bytes"] + resumed_bytes
        error: tuple | None = None
        last_progress = last_save = time.monotonic()
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="s3sync")
        try:
            complete, order = submission_order(todo)
            for task in complete:        # killed just before its rename: only the rename is left
                pool.submit(self._finish_only, task)
            for task, idx in order:
                pool.submit(self.fetch_part, task, idx)
            submitted = len(complete) + len(order)
            while pending and error is None:
                try:
                    kind, task, payload = self.events.get(timeout=0.2)
                except queue.Empty:
                    kind = None
                    if self.tasks_finished == submitted and self.events.empty():
                        raise SyncError(f"internal error: {len(pending)} file(s) never completed: "
                                        + ", ".join(sorted(pending)[:5]), kind="internal") from None
                if kind == "error":
                    error = (task, payload)
                    break
                if kind == "part":
                    self.remember_partial(task)
                elif kind == "file":
                    self._record_file(task, payload)
                    pending.pop(task.obj.rel, None)
                    progress["files_done"] += 1
                    self.out.event("file", path=task.obj.rel, bytes=task.obj.size,
                                   files_done=progress["files_done"], files_total=progress["files_total"])
                now = time.monotonic()
                if self.out.broken:
                    raise Interrupted("the controller stopped reading")
                if now - last_progress >= PROGRESS_INTERVAL:
                    last_progress = now
                    self.out.event("progress", bytes_done=base_done + self.bytes_done,
                                   bytes_total=progress["bytes_total"], files_done=progress["files_done"],
                                   files_total=progress["files_total"], downloaded_bytes=self.bytes_done)
                if now - last_save >= MANIFEST_SAVE_INTERVAL:
                    last_save = now
                    self.manifest.save()
        except BaseException:
            self._halt(pool)
            self.tidy_partials(todo)
            self.manifest.save()
            raise
        if error is not None:
            self._halt(pool)
            raise self._failure(error, todo, totals)
        pool.shutdown(wait=True)
        self.manifest.save()
        return {"done_files": progress["files_done"], "resumed_bytes": resumed_bytes}

    def _halt(self, pool: ThreadPoolExecutor) -> None:
        self.stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        self._drain_parts()

    def _failure(self, error: tuple, todo: list[FileTask], totals: dict) -> SyncError:
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
        self.manifest.save()
        return failure

    def _record_file(self, task: FileTask, info: dict) -> None:
        rep = info["repaired"]
        self.manifest.record(task.obj, task.final, repaired="gzip" if rep else None,
                             content_encoding=task.content_encoding, sha=info["sha256"])
        if rep:
            shown = {k: v for k, v in rep.items() if k not in ("tmp", "sha256")}
            self.repaired.append(shown)
            self.out.event("repaired", **shown)

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
                self.manifest.record(task.obj, task.final, repaired="gzip" if payload["repaired"] else None,
                                     content_encoding=task.content_encoding, sha=payload["sha256"])

    # ---- one part (worker threads)

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
            try:
                self._get_range(task, start, length)
                break
            except Stop:
                return
            except Exception as exc:  # noqa: BLE001
                transient = isinstance(exc, transient_errors())
                if not transient or attempt == PART_ATTEMPTS or self.stop.is_set():
                    self.events.put(("error", task, exc))
                    self.stop.set()
                    return
                time.sleep(0.2 * 2 ** attempt)
        with task.lock:
            task.done.add(idx)
            complete = len(task.done) == task.nparts and not task.finishing
            task.finishing = task.finishing or complete
        if not complete:
            self.events.put(("part", task, idx))
            return
        try:
            info = self.finish_file(task)
        except Exception as exc:  # noqa: BLE001
            self.events.put(("error", task, exc))
            self.stop.set()
            return
        self.events.put(("file", task, info))

    def _get_range(self, task: FileTask, start: int, length: int) -> int:
        fd = task.open()
        if length == 0:
            return 0
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
            raise ShortBody(f"expected {length} bytes, the server sends {resp.get('ContentLength')}")
        body = resp["Body"]
        written = [0]                 # bytes of this attempt written so far (taken back when it fails)
        fast = fast_reader(body) if not task.whole else None
        try:
            if fast is not None:
                self._copy_fast(fast, fd, start, length, written)
                body._raw_stream.release_conn()
            else:
                self._copy_plain(body, fd, start, length, written)
        except BaseException:
            body.close()
            with self.count_lock:
                self.bytes_done -= written[0]
            raise
        return written[0]

    def _copy_fast(self, fp, fd: int, pos: int, length: int, written: list[int]) -> None:
        view = memoryview(bytearray(IO_CHUNK))
        while written[0] < length:
            if self.stop.is_set():
                raise Stop
            got = fp.readinto(view[:min(IO_CHUNK, length - written[0])])
            if not got:
                raise ShortBody(f"connection closed after {written[0]} of {length} bytes")
            self._write(fd, view[:got], pos)
            pos += got
            written[0] += got

    def _copy_plain(self, body, fd: int, pos: int, length: int, written: list[int]) -> None:
        while True:
            if self.stop.is_set():
                raise Stop
            chunk = body.read(IO_CHUNK)   # validates length (and checksums, when sent)
            if not chunk:
                break
            self._write(fd, chunk, pos)
            pos += len(chunk)
            written[0] += len(chunk)
        if written[0] != length:
            raise ShortBody(f"got {written[0]} of {length} bytes")

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
        repaired = repair_gzipped_text(task, self.warn)
        source, sha = (repaired["tmp"], repaired["sha256"]) if repaired else (task.partial, None)
        os.replace(source, task.final)
        if repaired:
            os.unlink(task.partial)
        task.finished = True
        return {"repaired": repaired, "sha256": sha}

    # ---- partial files

    def remember_partial(self, task: FileTask) -> None:
        with task.lock:
            done = set(task.done)
        if task.nparts > 1 and done and not task.finished:
            self.manifest.remember_parts(task.obj, task.part_size, done)

    def cleanup_partials(self, tasks: list[FileTask]) -> None:
        for t in tasks:
            t.close()
            if not t.finished:
                _unlink(t.partial, t.final + REPAIR_SUFFIX)
                self.manifest.forget_partial(t.obj.rel)
                self.manifest.dirty = True

    def tidy_partials(self, tasks: list[FileTask]) -> None:
        """On the way out: partial files without recorded parts are useless to a re-run: remove them."""
        for t in tasks:
            t.close()
            if not t.finished and not (t.nparts > 1 and t.done):
                _unlink(t.partial, t.final + REPAIR_SUFFIX)


def _unlink(*paths: str) -> None:
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
