"""From a job to what the Trainer eats: validated datasets, token ids (cached), packs, the collator.

The datasets are checked for the recipe's task before any model loads (`inputs.check_inputs`); tokenizing goes
through the feature cache (`feature_cache.py`); with `packing` the training features are grouped into packs
(`packing.py`). Evaluation features are never packed, and are cut to the recipe's `eval_max_samples`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .recipes import Recipe


@dataclass
class PreparedData:
    tokenizer: Any
    style: Any                   # StyleTokens (verbosity) or None
    train: Any                   # FeatureSet
    train_dataset: Any
    collator: Any
    eval_examples: list | None = None
    eval_dataset: Any = None
    packing: dict | None = None

    @property
    def examples_per_item(self) -> float:
        return self.packing["examples_per_pack"] if self.packing else 1.0


def default_cache_dir(run_dir: Path) -> Path:
    """WORK/cache/features when the run lives in WORK/runs/<id> (the instance layout), else RUN/cache."""
    run_dir = Path(run_dir).resolve()
    if run_dir.parent.name == "runs":
        return run_dir.parent.parent / "cache" / "features"
    return run_dir / "cache"


def featurize(dataset, tokenizer, recipe: Recipe, cache, chat_sha: str | None) -> tuple[Any, dict[str, Any]]:
    """The dataset's FeatureSet, from the cache when an entry with the same key exists."""
    from .feature_cache import cache_key
    from .features import build_features

    key = cache_key(dataset.sha256, tokenizer, recipe, chat_sha)
    features = cache.load(key) if cache is not None else None
    info = {"key": key[:32], "hit": features is not None}
    if features is None:
        features = build_features(tokenizer, dataset.examples, recipe.chat_template_kwargs, recipe.max_length,
                                  recipe.on_overlength)
        if cache is not None:
            info["path"] = str(cache.store(key, features))
    return features, info


def _eval_part(evaluation, tokenizer, recipe: Recipe, cache, chat_sha):
    """(examples answered by generation: the file's first ones, as `evaluate --samples N` takes them; the loss
    dataset: the first eval_max_samples that fit max_length; a summary)."""
    from .features import FeatureDataset

    features, info = featurize(evaluation, tokenizer, recipe, cache, chat_sha)
    dataset = FeatureDataset(features.features[: recipe.eval_max_samples])
    return evaluation.examples, dataset, {**features.summary(), **info}


def prepare_data(job, recipe: Recipe, model_dir: str, record, cache_dir: Path | None) -> PreparedData:
    """Validate (before any model), tokenize with the base tokenizer (+ style tokens), pack, collate."""
    from .feature_cache import FeatureCache
    from .features import Collator, FeatureDataset
    from .inputs import check_inputs
    from .modeling import chat_template_sha256, prepare_tokenizer
    from .packing import PackedCollator, PackedDataset

    dataset, evaluation = check_inputs(recipe, job.dataset, job.eval_dataset)
    record.update(dataset={"path": str(job.dataset), "sha256": dataset.sha256, "lines": dataset.lines,
                           **dataset.counts})
    earlier = record.previous.get("dataset", {}).get("sha256")
    if earlier and earlier != dataset.sha256:
        print(f"warning: the dataset changed since the previous attempt of this run ({earlier[:12]} -> "
              f"{dataset.sha256[:12]}); resuming trains the rest of the run on the new data", flush=True)
    tokenizer, style = prepare_tokenizer(model_dir, recipe.uses_style_tokens)
    chat_sha = chat_template_sha256(tokenizer)
    cache = FeatureCache(cache_dir) if cache_dir is not None else None
    features, info = featurize(dataset, tokenizer, recipe, cache, chat_sha)
    record.update(dataset={**record.data["dataset"], **features.summary(), "cache": info},
                  style_tokens=style.to_dict() if style else None, chat_template_sha256=chat_sha)
    if features.overlength:
        print(f"warning: {len(features.overlength)} example(s) longer than max_length={recipe.max_length} tokens "
              f"were left out: {', '.join(s for s, _ in features.overlength[:10])}", flush=True)
    data = PreparedData(tokenizer, style, features, FeatureDataset(features.features), Collator(tokenizer.pad_token_id))
    if recipe.packing:
        packed = PackedDataset(features.features, recipe.max_length)
        data.train_dataset, data.packing = packed, packed.summary()
        data.collator = PackedCollator(tokenizer.pad_token_id)
        record.update(packing=data.packing)
    if evaluation is not None:
        data.eval_examples, data.eval_dataset, summary = _eval_part(evaluation, tokenizer, recipe, cache, chat_sha)
        record.update(eval_dataset={"path": str(job.eval_dataset), "sha256": evaluation.sha256,
                                    **evaluation.counts, **summary})
    return data
