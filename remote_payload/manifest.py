"""`manifest.json`: every file of a directory with its relative path, size and sha256.

The controller fetches `RUN/adapter/` and checks each fetched file against the manifest written on the
instance (`verify_manifest` is the same check, used by the tests and available to anyone holding the payload).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .modeling import file_sha256

MANIFEST = "manifest.json"


def build_manifest(directory: Path) -> dict[str, Any]:
    files = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST):
        files.append({"path": path.relative_to(directory).as_posix(), "size": path.stat().st_size,
                      "sha256": file_sha256(path)})
    return {"format": 1, "files": files, "total_bytes": sum(f["size"] for f in files)}


def write_manifest(directory: Path) -> Path:
    target = directory / MANIFEST
    target.write_text(json.dumps(build_manifest(directory), indent=2) + "\n", encoding="utf-8")
    return target


def verify_manifest(directory: Path) -> list[str]:
    """Problems found ('missing x', 'size of x ...', 'sha256 of x ...', 'unlisted x'); empty when all match."""
    listed = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))["files"]
    problems = []
    for entry in listed:
        path = directory / entry["path"]
        if not path.is_file():
            problems.append(f"missing {entry['path']}")
        elif path.stat().st_size != entry["size"]:
            problems.append(f"size of {entry['path']} is {path.stat().st_size}, manifest says {entry['size']}")
        elif file_sha256(path) != entry["sha256"]:
            problems.append(f"sha256 of {entry['path']} does not match the manifest")
    names = {e["path"] for e in listed}
    problems += [f"unlisted {p.relative_to(directory).as_posix()}" for p in sorted(directory.rglob("*"))
                 if p.is_file() and p.name != MANIFEST and p.relative_to(directory).as_posix() not in names]
    return problems
