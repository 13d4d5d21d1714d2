"""Does a local file hold the bytes S3 describes with this ETag? (MD5 of the object, or for a multipart upload
the MD5 of the parts' MD5s with the part count: the part size comes from `HeadObject(PartNumber=1)`.)"""

from __future__ import annotations

import hashlib
import re

from .names import MiB

MD5_RE = re.compile(r"[0-9a-f]{32}")
MULTIPART_RE = re.compile(r"([0-9a-f]{32})-(\d+)")


def file_digest(path: str, algo: str = "sha256") -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(8 * MiB), b""):
            h.update(block)
    return h.hexdigest()


def multipart_parts(etag: str) -> int | None:
    """The part count of a multipart ETag ('<md5>-<parts>'), or None for any other form."""
    m = MULTIPART_RE.fullmatch(etag.strip('"').lower())
    return int(m.group(2)) if m else None


def etag_matches_file(path: str, etag: str, part_size: int | None = None) -> bool | None:
    """True/False, or None when it cannot be told: the ETag is not an MD5 form (SSE-KMS, some S3-compatible
    stores), or it is a multipart ETag and the upload's part size is unknown."""
    e = etag.strip('"').lower()
    if MD5_RE.fullmatch(e):
        return file_digest(path, "md5") == e
    if multipart_parts(e) is None or not part_size:
        return None
    digests = []
    with open(path, "rb") as f:
        while True:
            part, left = hashlib.md5(), part_size
            while left:                    # a part at a time, read in blocks of at most 8 MiB
                block = f.read(min(left, 8 * MiB))
                if not block:
                    break
                part.update(block)
                left -= len(block)
            if left == part_size:
                break
            digests.append(part.digest())
    return hashlib.md5(b"".join(digests)).hexdigest() + f"-{len(digests)}" == e
