"""What the sync calls things: its own file names, sizes, S3 URIs, relative paths, text files by name."""

from __future__ import annotations

import argparse
import re

from .errors import InputProblem

MANIFEST_NAME = ".orch-weights.json"
LOCK_NAME = ".orch-weights.lock"
PARTIAL_SUFFIX = ".orch-partial"
REPAIR_SUFFIX = ".orch-repair"
TMP_SUFFIX = ".orch-tmp"
OWN_SUFFIXES = (PARTIAL_SUFFIX, REPAIR_SUFFIX, TMP_SUFFIX)
MiB = 1024 * 1024

# Files that are text by name: the only ones a gzip repair may touch.
TEXT_SUFFIXES = {".json", ".jsonl", ".txt", ".md", ".jinja", ".jinja2", ".j2", ".py", ".yaml", ".yml",
                 ".csv", ".tsv", ".tiktoken", ".vocab", ".cfg", ".ini", ".toml", ".html", ".xml"}
TEXT_NAMES = {"LICENSE", "NOTICE", "README", "COPYING", "USE_POLICY", "merges", "vocab"}
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)


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


def is_own_file(name: str) -> bool:
    """The manifest, the lock, partial/repair/temporary files: never weights, never reported as extra."""
    return name in (MANIFEST_NAME, LOCK_NAME) or name.endswith(OWN_SUFFIXES)


def safe_relpath(key: str, prefix: str) -> str:
    rel = key[len(prefix):]
    parts = rel.split("/")
    if not rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\x00" in rel:
        raise InputProblem(f"object key {key!r} cannot be written safely under the destination",
                           hint="keys must be relative paths without '.', '..' or empty segments")
    if is_own_file(parts[-1]):
        raise InputProblem(f"object key {key!r} collides with a name s3sync uses for itself")
    return rel


def boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip() or None
    except OSError:
        return None
