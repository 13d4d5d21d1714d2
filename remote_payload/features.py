"""Examples -> token ids and labels. Every prompt token is masked with -100; only the answer is trained.

The prompt ids come from `prompting.encode_prompt`, the same call evaluation uses. An example longer than
`max_length` is never cut (cutting from the right removes the answer and its end-of-turn token -- the seed's
"useruser" loops; cutting from the left removes the style token): it is dropped and reported, or refused,
as the recipe's `on_overlength` says.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from .dataset import Example
from .errors import DatasetError
from .prompting import encode_prompt, render_completion

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Feature:
    source: str
    style: str | None
    input_ids: list[int]
    labels: list[int]
    prompt_tokens: int
    completion_tokens: int
    label: str | None = None         # classification: the label word this example trains


@dataclass
class FeatureSet:
    features: list[Feature]
    overlength: list[tuple[str, int]] = field(default_factory=list)   # (source, total tokens) not trained
    max_length: int = 0

    def summary(self) -> dict[str, Any]:
        return {"trained_examples": len(self.features), "max_length": self.max_length,
                "dropped_overlength": len(self.overlength),
                "dropped_overlength_examples": [f"{s} ({n} tokens)" for s, n in self.overlength[:20]],
                "trained_tokens": sum(f.completion_tokens for f in self.features),
                "masked_tokens": sum(f.prompt_tokens for f in self.features)}


def encode_example(tokenizer, example: Example, template_kwargs: dict[str, Any]) -> Feature:
    """Full (untruncated) ids and labels of one example."""
    prompt_ids = encode_prompt(tokenizer, example.messages, example.style, template_kwargs)
    completion = render_completion(tokenizer, example.messages, example.style, example.completion, template_kwargs)
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    return Feature(source=example.source, style=example.style, input_ids=prompt_ids + completion_ids,
                   labels=[IGNORE_INDEX] * len(prompt_ids) + completion_ids,
                   prompt_tokens=len(prompt_ids), completion_tokens=len(completion_ids), label=example.label)


def build_features(tokenizer, examples: list[Example], template_kwargs: dict[str, Any], max_length: int,
                   on_overlength: str = "drop") -> FeatureSet:
    """Encode all examples; apply the over-length policy ("drop": skip and report, "error": refuse)."""
    kept, overlength = [], []
    for example in examples:
        feature = encode_example(tokenizer, example, template_kwargs)
        if len(feature.input_ids) > max_length:
            overlength.append((example.source, len(feature.input_ids)))
        else:
            kept.append(feature)
    if overlength and on_overlength == "error":
        raise DatasetError(f"{len(overlength)} example(s) are longer than max_length={max_length} tokens",
                           [f"{s}: {n} tokens" for s, n in overlength],
                           hint="raise max_length in the job overrides, shorten them, or set on_overlength=drop")
    if not kept:
        raise DatasetError(f"every example is longer than max_length={max_length} tokens; nothing to train",
                           hint="raise max_length in the job overrides")
    return FeatureSet(features=kept, overlength=overlength, max_length=max_length)


def length_stats(values: list[int], percentiles=(50, 90, 95, 99, 100)) -> dict[str, float]:
    """min/max/mean and nearest-rank percentiles of `values`."""
    ordered = sorted(values)
    stats = {"min": float(ordered[0]), "max": float(ordered[-1]), "mean": round(statistics.fmean(ordered), 2)}
    for p in percentiles:
        rank = max(1, -(-p * len(ordered) // 100))
        stats[f"p{p}"] = float(ordered[rank - 1])
    return stats


class Collator:
    """Right-pads a batch: input_ids with the pad id, labels with -100, attention_mask 1/0."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, batch: list[dict]) -> dict:
        import torch

        width = max(len(item["input_ids"]) for item in batch)

        def pad(key: str, value: int) -> "torch.Tensor":
            return torch.tensor([item[key] + [value] * (width - len(item[key])) for item in batch])

        mask = [[1] * len(item["input_ids"]) + [0] * (width - len(item["input_ids"])) for item in batch]
        return {"input_ids": pad("input_ids", self.pad_token_id), "labels": pad("labels", IGNORE_INDEX),
                "attention_mask": torch.tensor(mask)}


class FeatureDataset:
    """A torch-style map dataset over features (only the keys the model's forward takes)."""

    def __init__(self, features: list[Feature]):
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict:
        feature = self.features[index]
        return {"input_ids": feature.input_ids, "labels": feature.labels}
