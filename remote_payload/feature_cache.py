"""Tokenized features cached on disk, keyed by everything they depend on.

Seed 003 caches preprocessed data by dataset alone and lists, for the user to remember, when to delete the cache
by hand (changed data, tokenizer, chat template, cutoff_len, preprocessing code). Here the key is the sha256 of
all of those: the dataset's sha256, the tokenizer (its full serialisation, added tokens included), the chat
template, its kwargs, the system prompt, the task and label words, max_length, the over-length policy, and the
source of the modules that turn records into token ids. Any change gives a new key, so a stale entry is never
read; `--clear-cache` only frees space.

An entry is `<cache dir>/<key[:32]>/` with `features.npz` (all token ids, flat, int32) and `meta.json`; it is
written to a temporary folder and renamed, so a reader never sees half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from .features import IGNORE_INDEX, Feature, FeatureSet

FORMAT = 1
CODE = ("dataset.py", "formats.py", "movielens.py", "styles.py", "prompting.py", "features.py", "feature_cache.py")


def tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cache_key(dataset_sha256: str, tokenizer, recipe, chat_template_sha256: str | None) -> str:
    here = Path(__file__).resolve().parent
    parts = {"format": FORMAT, "dataset": dataset_sha256, "tokenizer": tokenizer_fingerprint(tokenizer),
             "chat_template": chat_template_sha256, "template_kwargs": recipe.chat_template_kwargs,
             "system_prompt": recipe.system_prompt, "task": recipe.task, "max_length": recipe.max_length,
             "on_overlength": recipe.on_overlength,
             "labels": [recipe.evaluation.positive, recipe.evaluation.negative]
             if recipe.task == "classification" else None,
             "code": {name: hashlib.sha256((here / name).read_bytes()).hexdigest() for name in CODE}}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()


class FeatureCache:
    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def clear(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def load(self, key: str) -> FeatureSet | None:
        import numpy as np

        entry = self.directory / key[:32]
        try:
            meta = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
            if meta.get("key") != key:
                return None
            with np.load(entry / "features.npz") as arrays:
                ids, lengths, prompts = arrays["ids"].tolist(), arrays["lengths"].tolist(), arrays["prompts"].tolist()
        except (OSError, ValueError, KeyError):
            return None
        features, start = [], 0
        for i, (length, prompt) in enumerate(zip(lengths, prompts)):
            row = ids[start:start + length]
            start += length
            features.append(Feature(source=meta["sources"][i], style=meta["styles"][i], input_ids=row,
                                    labels=[IGNORE_INDEX] * prompt + row[prompt:], prompt_tokens=prompt,
                                    completion_tokens=length - prompt, label=meta["labels"][i]))
        return FeatureSet(features, [tuple(o) for o in meta["overlength"]], meta["max_length"])

    def store(self, key: str, features: FeatureSet) -> Path:
        import numpy as np

        entry = self.directory / key[:32]
        tmp = self.directory / f".{key[:32]}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        rows = features.features
        np.savez(tmp / "features.npz", ids=np.array([t for f in rows for t in f.input_ids], dtype=np.int32),
                 lengths=np.array([len(f.input_ids) for f in rows], dtype=np.int64),
                 prompts=np.array([f.prompt_tokens for f in rows], dtype=np.int64))
        meta: dict[str, Any] = {"key": key, "max_length": features.max_length, "overlength": features.overlength,
                                "sources": [f.source for f in rows], "styles": [f.style for f in rows],
                                "labels": [f.label for f in rows]}
        (tmp / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        shutil.rmtree(entry, ignore_errors=True)
        os.replace(tmp, entry)
        return entry
