"""Replay: a share of the parent stage's dataset mixed into a stage-2 dataset, so the style tokens survive
(seed 001: "Keep Stage-1 dataset in Stage-2 mix at 5-10% to preserve control tokens").

`fraction` is the replayed rows' share of the *mixed* dataset: n new rows get round(n * f / (1 - f)) parent
rows (at most all of them), drawn without replacement by `random.Random(seed)` and spread through the new rows
at seeded positions. The same inputs and seed always give the same bytes. Lines are kept verbatim (the
payload's loader validates them like any others). Stdlib only: the controller builds the mix into the job's
inputs; job.json "replay" records what was mixed.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

MAX_FRACTION = 0.5


def data_lines(data: bytes) -> list[bytes]:
    """The non-blank lines of a JSONL file, each without its line ending."""
    return [line.rstrip(b"\r") for line in data.split(b"\n") if line.strip()]


def replay_count(new_rows: int, parent_rows: int, fraction: float) -> int:
    if not 0 < fraction <= MAX_FRACTION:
        raise ValueError(f"replay fraction must be in (0, {MAX_FRACTION}] (got {fraction})")
    return min(parent_rows, round(new_rows * fraction / (1 - fraction)))


def mix(new: bytes, parent: bytes, fraction: float, seed: int) -> tuple[bytes, dict[str, Any]]:
    """(the mixed JSONL, what was mixed: counts, the parent lines chosen (1-based), sha256s, seed)."""
    ours, theirs = data_lines(new), data_lines(parent)
    count = replay_count(len(ours), len(theirs), fraction)
    rng = random.Random(seed)
    chosen = sorted(rng.sample(range(len(theirs)), count))
    mixed = list(ours)
    for index in chosen:
        mixed.insert(rng.randrange(len(mixed) + 1), theirs[index])
    body = b"".join(line + b"\n" for line in mixed)
    return body, {"fraction": fraction, "seed": seed, "new_rows": len(ours), "parent_rows": len(theirs),
                  "replayed_rows": count, "replayed_lines": [i + 1 for i in chosen],
                  "parent_sha256": hashlib.sha256(parent).hexdigest(),
                  "mixed_sha256": hashlib.sha256(body).hexdigest()}
