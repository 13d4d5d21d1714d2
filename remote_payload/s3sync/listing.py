"""The objects under the source prefix (one paginated ListObjectsV2), and a 'did you mean' when there are none."""

from __future__ import annotations

import difflib

from .errors import InputProblem, classify
from .names import safe_relpath


class RemoteObject:
    __slots__ = ("etag", "key", "rel", "size")

    def __init__(self, key: str, rel: str, size: int, etag: str):
        self.key, self.rel, self.size, self.etag = key, rel, size, etag


def list_objects(client, bucket: str, prefix: str, endpoint: str | None, warn) -> list[RemoteObject]:
    source = f"s3://{bucket}/{prefix}"
    objects: list[RemoteObject] = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", ()):
                key = item["Key"]
                if key.endswith("/"):
                    if item.get("Size", 0):
                        warn(f"skipping {key!r}: a key ending in '/' with data")
                    continue      # "folder" markers created by consoles
                objects.append(RemoteObject(key, safe_relpath(key, prefix), int(item["Size"]),
                                            str(item.get("ETag") or "")))
    except Exception as exc:  # noqa: BLE001 - classified into one message
        raise classify(exc, f"listing {source}", bucket, endpoint) from None
    if not objects:
        raise InputProblem(f"no objects under {source}: the prefix does not exist or is empty",
                           hint=_suggest(client, bucket, prefix), kind="empty-prefix")
    seen: dict[str, str] = {}
    for o in objects:
        if o.rel.lower() in seen:
            warn(f"{o.key!r} and {seen[o.rel.lower()]!r} differ only in case")
        seen[o.rel.lower()] = o.key
    return objects


def _suggest(client, bucket: str, prefix: str) -> str:
    """'did you mean' from the parent prefix (one more request, only on this error)."""
    parent = prefix.rstrip("/").rpartition("/")[0]
    parent = parent + "/" if parent else ""
    try:
        resp = client.list_objects_v2(Bucket=bucket, Prefix=parent, Delimiter="/", MaxKeys=1000)
    except Exception:  # noqa: BLE001 - a hint only
        return "check the job's weights URI"
    names = [p["Prefix"] for p in resp.get("CommonPrefixes", ())]
    close = difflib.get_close_matches(prefix, names, n=3, cutoff=0.5)
    if close:
        return "did you mean " + " or ".join(f"s3://{bucket}/{c}" for c in close) + "?"
    if names:
        return f"prefixes under s3://{bucket}/{parent}: " + ", ".join(names[:8])
    return "check the job's weights URI"
