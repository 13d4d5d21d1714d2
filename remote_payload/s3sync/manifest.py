"""The record on disk (`DIR/.orch-weights.json`): per file what was synced and how it looks on disk, and per
large file being downloaded which of its parts are already written."""

from __future__ import annotations

import errno
import json
import math
import os
import time

from .errors import InputProblem
from .etag import file_digest
from .names import MANIFEST_NAME, PARTIAL_SUFFIX, TMP_SUFFIX, MiB

MANIFEST_VERSION = 1
SHA256_MAX = 64 * MiB                # files up to this size get a local sha256 in the manifest


class Manifest:
    def __init__(self, dest: str, source: str, endpoint: str | None, boot: str | None):
        self.dest, self.source, self.endpoint, self.boot = dest, source, endpoint, boot
        self.path = os.path.join(dest, MANIFEST_NAME)
        self.doc: dict = {}
        self.dirty = False

    @property
    def files(self) -> dict:
        return self.doc["files"]

    @property
    def partial(self) -> dict:
        return self.doc["partial"]

    def load(self, warn) -> None:
        try:
            with open(self.path, encoding="utf-8") as f:
                doc = json.load(f)
            if doc.get("version") != MANIFEST_VERSION or not isinstance(doc.get("files"), dict):
                raise ValueError("unknown manifest version")
        except FileNotFoundError:
            doc = None
        except (OSError, ValueError) as exc:
            warn(f"ignoring unreadable manifest {self.path} ({exc}); files on disk are re-checked")
            doc = None
        if doc and doc.get("source") not in (None, self.source):
            raise InputProblem(
                f"{self.dest} holds weights synced from {doc['source']}, not {self.source}",
                hint=f"sync into another directory, or delete {self.path} to adopt the files there (they are "
                     "checked against the ETags first)", kind="dest-mismatch")
        self.doc = doc or {"version": MANIFEST_VERSION, "source": self.source, "files": {}, "partial": {}}
        self.doc.setdefault("partial", {})
        self.doc["source"] = self.source

    def save(self, force: bool = False) -> None:
        if not (self.dirty or force):
            return
        self.doc["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.doc["endpoint"] = self.endpoint
        tmp = self.path + TMP_SUFFIX
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(self.doc, f, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
            self.dirty = False
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            if exc.errno != errno.ENOSPC:
                raise
            # Disk full: completed files stay on disk and are adopted by ETag on the next run.

    def record(self, obj, final: str, *, repaired, content_encoding, sha, durable=False) -> None:
        """A file is complete at `final`."""
        st = os.stat(final)
        if sha is None and st.st_size <= SHA256_MAX:
            sha = file_digest(final)
        self.files[obj.rel] = {
            "key": obj.key, "size": obj.size, "etag": obj.etag, "local_size": st.st_size,
            "mtime_ns": st.st_mtime_ns, "sha256": sha, "repaired": repaired,
            "content_encoding": content_encoding, "boot": self.boot, "done_at": time.time(),
            "durable": durable,
        }
        self.partial.pop(obj.rel, None)
        self.dirty = True

    def forget(self, rel: str) -> None:
        if self.files.pop(rel, None) is not None:
            self.dirty = True

    def forget_partial(self, rel: str) -> None:
        if self.partial.pop(rel, None) is not None:
            self.dirty = True

    def remember_parts(self, obj, part_size: int, done: set[int]) -> None:
        self.partial[obj.rel] = {"key": obj.key, "size": obj.size, "etag": obj.etag, "part_size": part_size,
                                 "done": ranges(done), "boot": self.boot}
        self.dirty = True

    def resumable_parts(self, obj, part_size: int) -> set[int]:
        """The parts of `obj` already on disk from an interrupted run of this boot with this part size."""
        state = self.partial.get(obj.rel)
        if not state or state.get("etag") != obj.etag or state.get("size") != obj.size \
                or state.get("boot") != self.boot or self.boot is None or state.get("part_size") != part_size:
            return set()
        partial = os.path.join(self.dest, *obj.rel.split("/")) + PARTIAL_SUFFIX
        try:
            if os.path.getsize(partial) != obj.size:
                return set()
        except OSError:
            return set()
        nparts = max(1, math.ceil(obj.size / part_size))
        return {i for i in parse_ranges(state.get("done", "")) if 0 <= i < nparts}


def ranges(done: set[int]) -> str:
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


def parse_ranges(text: str) -> set[int]:
    done: set[int] = set()
    for chunk in filter(None, (text or "").split(",")):
        a, _, b = chunk.partition("-")
        done.update(range(int(a), int(b or a) + 1))
    return done
