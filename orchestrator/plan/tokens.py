"""How many tokens a job's examples have, without a tokenizer (the controller has none).

Either estimated from the dataset -- the payload's own stdlib parser (`remote_payload.dataset.load_dataset`)
gives each example's turns and answer; characters / CHARS_PER_TOKEN plus the chat template's tokens -- or read
from a report of `python -m remote_payload.seqlen --json` run on the instance with the real tokenizer.

CHARS_PER_TOKEN = 4.0 is the usual rule of thumb for English prose with the 32k-150k-entry BPE vocabularies of
Qwen, Llama and Mistral (code and numbers tokenize denser). Template tokens per example: Qwen's ChatML in its
non-thinking form ("<|im_start|>user\\n", the style token and its newline, "<|im_end|>\\n",
"<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n", the closing "<|im_end|>") ~16, a system turn ~5 more;
Mistral's/Llama's "[INST] ... [/INST]" ~8, ~4 more with a system prompt.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError

CHARS_PER_TOKEN = 4.0
TEMPLATE_TOKENS = {"qwen3": (16, 5), "qwen2": (16, 5), "mistral": (8, 4), "llama": (8, 4)}   # (base, system)


@dataclass(frozen=True)
class TokenStats:
    """Sequence lengths of a dataset: `lengths` sorted (estimated per example) or quantile points of a report."""

    count: int
    quantiles: tuple[tuple[float, float], ...]       # (fraction 0..1, tokens), increasing
    source: str
    assumption: str
    total: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    @property
    def longest(self) -> int:
        return int(math.ceil(self.quantiles[-1][1]))

    def quantile(self, u: float) -> float:
        points = self.quantiles
        if u <= points[0][0]:
            return points[0][1]
        for (u0, v0), (u1, v1) in zip(points, points[1:]):
            if u <= u1:
                return v0 + (v1 - v0) * (u - u0) / ((u1 - u0) or 1)
        return points[-1][1]

    def fraction_over(self, cap: int) -> float:
        """The fraction of examples longer than `cap` tokens."""
        points = self.quantiles
        if points[-1][1] <= cap:
            return 0.0
        for (u0, v0), (u1, v1) in zip(points, points[1:]):
            if v1 > cap:
                return 1.0 - (u0 + (u1 - u0) * max(0.0, cap - v0) / ((v1 - v0) or 1))
        return 0.0

    def expected_longest(self, batch: int, cap: int | None = None) -> float:
        """E[longest of `batch` random examples], at most `cap`: what a padded micro-batch is as wide as."""
        if batch <= 1:
            return min(self.mean, cap or self.mean)
        steps = 400
        total = 0.0
        for k in range(steps):   # E[max] = integral of Q(u) d(u^batch)
            u0, u1 = k / steps, (k + 1) / steps
            total += self.quantile((u0 + u1) / 2) * (u1 ** batch - u0 ** batch)
        return min(total, cap) if cap else total

    def to_json(self) -> dict[str, Any]:
        return {"examples": self.count, "mean_tokens": round(self.mean, 1), "longest_tokens": self.longest,
                "total_tokens": self.total, "source": self.source, "assumption": self.assumption, **self.extra}


def _from_lengths(lengths: list[int], source: str, assumption: str) -> TokenStats:
    ordered = sorted(lengths)
    n = len(ordered)
    points = tuple(((i + 0.5) / n, float(v)) for i, v in enumerate(ordered))
    points = ((0.0, float(ordered[0])),) + points + ((1.0, float(ordered[-1])),)
    return TokenStats(n, points, source, assumption, total=sum(ordered))


def estimate_from_dataset(path: str | Path, model_type: str, recipe=None) -> TokenStats:
    """Token lengths estimated from the characters of each example (style token and template included).
    `recipe`: the resolved Recipe, whose task says how the dataset is read (without one: verbosity data)."""
    from remote_payload.dataset import DataSpec, load_dataset
    from remote_payload.errors import PayloadError

    try:
        dataset = load_dataset(path, DataSpec.from_recipe(recipe)) if recipe is not None else load_dataset(path)
    except PayloadError as exc:
        raise InputError(f"{path}: {exc.message}", hint=exc.hint) from None
    base, system = TEMPLATE_TOKENS.get(model_type, (16, 5))
    lengths = []
    for example in dataset.examples:
        chars = sum(len(m.get("content") or "") for m in example.messages) + len(example.completion)
        turns = base + (system if any(m.get("role") == "system" and m.get("content") for m in example.messages)
                        else 0) + 8 * max(0, len(example.messages) - 1)
        lengths.append(int(math.ceil(chars / CHARS_PER_TOKEN)) + turns)
    if not lengths:
        raise InputError(f"{path}: no examples")
    return _from_lengths(lengths, f"estimated from {Path(path).name} ({len(lengths)} examples)",
                         f"{CHARS_PER_TOKEN:g} characters per token + ~{base} chat-template tokens per example "
                         "(no tokenizer on the controller; pass --seqlen REPORT for exact counts)")


def from_seqlen_report(path: str | Path) -> TokenStats:
    """Lengths from `python -m remote_payload.seqlen --json` (the real tokenizer): its percentiles."""
    try:
        doc = json.loads(Path(path).read_text())
        stats, count = doc["total_tokens"], int(doc["examples"])
        points = [(0.0, float(stats["min"]))]
        points += [(p / 100, float(stats[f"p{p}"])) for p in sorted(int(p) for p in doc["percentiles"])]
        if points[-1][0] < 1.0:
            points.append((1.0, float(stats["max"])))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a seqlen report ({type(exc).__name__}: {exc})",
                         hint="make one with `python -m remote_payload.seqlen --job job.json --model-dir DIR --json`")
    return TokenStats(count, tuple(points), f"seqlen report {Path(path).name} ({count} examples, real tokenizer)",
                      "token counts from the model's tokenizer (percentiles interpolated)",
                      total=int(round(float(stats["mean"]) * count)))
