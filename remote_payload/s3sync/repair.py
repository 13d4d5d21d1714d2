"""Gzipped text: a JSON or text file (by name) stored gzip-compressed is decompressed after download and must
then parse (JSON) or decode (UTF-8); weights are never modified, only warned about."""

from __future__ import annotations

import gzip
import hashlib
import json
import zlib

from .errors import SyncError
from .names import REPAIR_SUFFIX, is_text_name

GZIP_MAGIC = b"\x1f\x8b"
MAX_LAYERS = 3


def repair_gzipped_text(task, warn) -> dict | None:
    """The repair of `task`'s downloaded partial file (written beside it as NAME.orch-repair), or None."""
    rel = task.obj.rel
    if task.obj.size < 2:
        return None
    with open(task.partial, "rb") as f:
        head = f.read(2)
    if head != GZIP_MAGIC:
        return None
    if not is_text_name(rel):
        warn(f"{rel} starts with the gzip magic bytes; it is not a text file, so it is kept as stored")
        return None
    with open(task.partial, "rb") as f:
        data = f.read()
    layers = 0
    try:
        while data[:2] == GZIP_MAGIC and layers < MAX_LAYERS:
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
