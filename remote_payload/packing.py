"""Packing: several examples per training sequence, up to max_length tokens, without attention or loss crossing
an example's boundary (seeds 001 and 003 train with `packing: true`).

Examples are grouped best-fit-decreasing into packs of at most `max_length` tokens, with position ids that
restart at 0 for every example; the model turns those position ids into the example boundaries (a
block-diagonal causal mask for sdpa/eager, varlen kernels for flash_attention_2, see `attention.py`). The label
of each example's first token is -100, so no token is trained to follow the previous example. Two layouts:

* flash_attention_2: transformers' `DataCollatorWithFlattening` flattens the whole batch into one row, with no
  padding at all (FA2's varlen kernels cost what the examples cost);
* sdpa/eager: one row per pack, padded to the batch's fullest pack; the padding is one more "example" (its
  position ids restart too, its labels are -100). Flattening the batch into one row would make their masked
  attention quadratic in the batch's total length: bench/packing.py measured 0.67x the unpacked speed on CPU.

transformers detects packed rows only when no KV cache is in use, so a packed batch also carries
`use_cache=False`: a model whose config says `use_cache: true` (every reloaded adapter does, for generation)
would otherwise let each example attend to the ones packed before it.
"""

from __future__ import annotations

import bisect
import statistics
from typing import Any

from .features import IGNORE_INDEX, Collator, Feature


def pack_indices(lengths: list[int], max_length: int) -> list[list[int]]:
    """Best-fit decreasing: each example (longest first) goes into the open pack it fills most tightly."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    packs: list[list[int]] = []
    free: list[tuple[int, int]] = []      # sorted (room left, pack index)
    for i in order:
        slot = bisect.bisect_left(free, (lengths[i], -1))
        if slot < len(free):
            room, pack = free.pop(slot)
            packs[pack].append(i)
        else:
            room, pack = max_length, len(packs)
            packs.append([i])
        if room - lengths[i] > 0:
            bisect.insort(free, (room - lengths[i], pack))
    return [sorted(p) for p in packs]


class PackedDataset:
    """Map dataset whose items are packs: {"examples": [{"input_ids", "labels"}, ...]}."""

    def __init__(self, features: list[Feature], max_length: int):
        self.features = features
        self.packs = pack_indices([len(f.input_ids) for f in features], max_length)

    def __len__(self) -> int:
        return len(self.packs)

    def __getitem__(self, index: int) -> dict:
        return {"examples": [{"input_ids": self.features[i].input_ids, "labels": self.features[i].labels}
                             for i in self.packs[index]]}

    def summary(self) -> dict[str, Any]:
        sizes = [len(p) for p in self.packs]
        tokens = [sum(len(self.features[i].input_ids) for i in p) for p in self.packs]
        return {"packs": len(self.packs), "examples": len(self.features),
                "examples_per_pack": round(statistics.fmean(sizes), 3), "tokens_per_pack": round(
                    statistics.fmean(tokens), 1), "max_tokens_per_pack": max(tokens)}


class PackedCollator:
    """Packs -> rows with restarting position ids (one flattened row for flash_attention_2); plain examples
    (evaluation) are padded as usual."""

    def __init__(self, pad_token_id: int, flash_attention: bool = False):
        from transformers import DataCollatorWithFlattening

        self.pad_token_id = pad_token_id
        self.flatten = DataCollatorWithFlattening(return_position_ids=True, separator_id=-100,
                                                  return_flash_attn_kwargs=True) if flash_attention else None
        self.pad = Collator(pad_token_id)

    def __call__(self, batch: list[dict]) -> dict:
        if "examples" not in batch[0]:
            return self.pad(batch)
        if self.flatten is not None:
            return {**self.flatten([e for item in batch for e in item["examples"]]), "use_cache": False}
        return {**self._rows([item["examples"] for item in batch]), "use_cache": False}

    def _rows(self, packs: list[list[dict]]) -> dict:
        import torch

        rows = []
        for pack in packs:
            ids = [t for e in pack for t in e["input_ids"]]
            labels = [t for e in pack for t in [IGNORE_INDEX, *e["labels"][1:]]]
            positions = [p for e in pack for p in range(len(e["input_ids"]))]
            rows.append((ids, labels, positions))
        width = max(len(ids) for ids, _, _ in rows)
        tail = [width - len(ids) for ids, _, _ in rows]
        return {"input_ids": torch.tensor([r[0] + [self.pad_token_id] * n for r, n in zip(rows, tail)]),
                "labels": torch.tensor([r[1] + [IGNORE_INDEX] * n for r, n in zip(rows, tail)]),
                "position_ids": torch.tensor([r[2] + list(range(n)) for r, n in zip(rows, tail)])}
