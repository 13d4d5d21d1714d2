"""What a run has to do: which listed objects are current on disk, which are adopted (already there, MD5 matches
the ETag), which resume from parts already written, and which are fetched whole; and whether they fit."""

from __future__ import annotations

import math
import os
import shutil
import threading
import time

from .errors import SyncError
from .etag import etag_matches_file, file_digest, multipart_parts
from .listing import RemoteObject
from .manifest import Manifest
from .names import PARTIAL_SUFFIX, MiB, human, is_own_file

SPACE_MARGIN = 64 * MiB              # free space kept beyond what the download needs
DURABLE_AFTER = 35.0                 # seconds after which the kernel has normally written a file back


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

    def bytes_on_disk(self) -> int:
        return sum(self.part_range(i)[1] for i in self.done)

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


class Planner:
    """`head_part_size(obj)` tells a multipart upload's part size (HeadObject PartNumber=1), or None."""

    def __init__(self, dest: str, manifest: Manifest, part_size: int, out, warn, head_part_size):
        self.dest, self.manifest, self.part_size = dest, manifest, part_size
        self.out, self.warn, self.head_part_size = out, warn, head_part_size

    def plan(self, objects: list[RemoteObject]) -> tuple[list[FileTask], list[RemoteObject]]:
        files = self.manifest.files
        listed = {o.rel for o in objects}
        for rel in [r for r in files if r not in listed]:
            self.manifest.forget(rel)      # gone from S3: forget it (the local file is reported as extra)
        todo: list[FileTask] = []
        present: list[RemoteObject] = []
        for obj in objects:
            entry = files.get(obj.rel)
            if self.entry_is_current(obj, entry) and self.make_durable(obj, entry):
                present.append(obj)
                continue
            self.manifest.forget(obj.rel)
            if self.adopt(obj):
                present.append(obj)
                continue
            task = FileTask(obj, self.dest, self.part_size, self.manifest.resumable_parts(obj, self.part_size))
            if not task.done:
                self.manifest.partial.pop(obj.rel, None)
            todo.append(task)
        # Small files first (they finish and are recorded quickly), then the shards in key order.
        todo.sort(key=lambda t: (t.nparts > 1, t.obj.rel))
        for stale in set(self.manifest.partial) - {t.obj.rel for t in todo}:
            self.manifest.partial.pop(stale, None)
        return todo, present

    def local(self, obj: RemoteObject) -> str:
        return os.path.join(self.dest, *obj.rel.split("/"))

    def entry_is_current(self, obj: RemoteObject, entry: dict | None) -> bool:
        if not entry or entry.get("etag") != obj.etag or entry.get("size") != obj.size:
            return False
        try:
            st = os.stat(self.local(obj))
        except OSError:
            return False
        return st.st_size == entry.get("local_size") and st.st_mtime_ns == entry.get("mtime_ns")

    def make_durable(self, obj: RemoteObject, entry: dict) -> bool:
        """True when the file's bytes are known to be on disk (or were just checked)."""
        if entry.get("durable", True) or self.manifest.boot is None:
            return True
        final = self.local(obj)
        if entry.get("boot") == self.manifest.boot:
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
                ok = not entry.get("repaired") and bool(self.matches_etag(final, obj))
            if not ok:
                self.warn(f"{obj.rel} was written before a reboot and does not verify: downloading again")
                return False
        entry["durable"] = True
        self.manifest.dirty = True
        return True

    def adopt(self, obj: RemoteObject) -> bool:
        """A file already on disk without a manifest entry: keep it if its MD5 matches the ETag."""
        final = self.local(obj)
        try:
            st = os.stat(final)
        except OSError:
            return False
        if not os.path.isfile(final) or st.st_size != obj.size:
            return False
        self.out.event("verify", path=obj.rel, bytes=obj.size)
        if not self.matches_etag(final, obj):
            return False
        self.manifest.record(obj, final, repaired=None, content_encoding=None, sha=None, durable=True)
        return True

    def matches_etag(self, path: str, obj: RemoteObject) -> bool | None:
        parts = multipart_parts(obj.etag)
        if parts is None:
            return etag_matches_file(path, obj.etag)
        part_size = obj.size if parts == 1 else self.head_part_size(obj)
        return etag_matches_file(path, obj.etag, part_size)


def check_space(dest: str, todo: list[FileTask], *, skip: bool) -> int:
    """The bytes still to download; refuses when they do not fit (with a margin)."""
    need = sum(t.obj.size - t.bytes_on_disk() for t in todo)
    if skip or not todo:
        return need
    usage = shutil.disk_usage(dest)
    if need + SPACE_MARGIN > usage.free:
        raise SyncError(f"not enough space in {dest}: the download needs {human(need)} "
                        f"(+{human(SPACE_MARGIN)} margin), {human(usage.free)} free",
                        hint="free space there, or point the instance's models_dir at a larger volume "
                             "(never /tmp)", kind="disk-full")
    return need


def extra_files(dest: str, objects: list[RemoteObject]) -> list[str]:
    """Local files that are not in the listing (never deleted: reported)."""
    listed = {o.rel for o in objects}
    extra = []
    for root, _dirs, names in os.walk(dest):
        for name in names:
            if is_own_file(name):
                continue
            rel = os.path.relpath(os.path.join(root, name), dest).replace(os.sep, "/")
            if rel not in listed:
                extra.append(rel)
    return sorted(extra)
