"""What an export starts from: a training adapter (`RUN/adapter/`) and the base model directory it was trained on.

Only files are read here (configs, safetensors headers, the few rows needed); no model is loaded. Everything
the two export formats need to know is checked once, with the fix in the message: the adapter is one this
payload wrote (payload_meta.json), it matches the base (style ids, embedding rows, config sha256), and its
trained rows are where payload_meta.json says.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..modeling import check_model_dir, file_sha256, read_adapter_meta
from ..recipes import Recipe, recipe_from_dict

ADAPTER_WEIGHTS = "adapter_model.safetensors"
DELTA_SUFFIX = "trainable_tokens_delta"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "tokenizer.model", "vocab.json", "merges.txt", "added_tokens.json")


class ExportRefused(InputError):
    """The requested export cannot be made from this adapter/base (exit 2); the hint says what to use instead."""


def base_weight_files(model_dir: Path) -> dict[str, Path]:
    """tensor name -> safetensors file holding it, for a single-file or sharded (index.json) checkpoint."""
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        return {name: model_dir / file for name, file in weight_map.items()}
    single = model_dir / "model.safetensors"
    if not single.is_file():
        raise ExportRefused(f"{model_dir} has no safetensors weights (model.safetensors or its index)",
                            hint="convert the base checkpoint to safetensors first")
    from safetensors import safe_open

    with safe_open(str(single), "pt") as handle:
        return {name: single for name in handle.keys()}


def find_tensor(files: dict[str, Path], suffix: str) -> str | None:
    matches = sorted(n for n in files if n == suffix or n.endswith("." + suffix))
    return matches[0] if matches else None


def read_rows(path: Path, name: str, ids: list[int]):
    """Rows `ids` of the 2-D tensor `name` in `path` (only those rows are read from disk)."""
    import torch
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        view = handle.get_slice(name)
        return torch.stack([view[i:i + 1][0] for i in ids])


@dataclass
class ExportSource:
    """A training adapter plus its base, checked against each other."""

    model_dir: Path
    adapter_dir: Path
    meta: dict[str, Any]
    adapter_config: dict[str, Any]
    base_config: dict[str, Any]
    base_files: dict[str, Path]

    @property
    def recipe(self) -> Recipe:
        return recipe_from_dict(self.meta["recipe"])

    @property
    def style(self) -> dict[str, Any]:
        return self.meta["style_tokens"]

    @property
    def style_ids(self) -> list[int]:
        return [self.style["terse_id"], self.style["verbose_id"]]

    @property
    def architecture(self) -> str:
        return (self.base_config.get("architectures") or ["?"])[0]

    @property
    def base_vocab(self) -> int:
        text = self.base_config.get("text_config") or self.base_config
        return int(text["vocab_size"])

    @property
    def hidden_size(self) -> int:
        text = self.base_config.get("text_config") or self.base_config
        return int(text["hidden_size"])

    @property
    def tied_embeddings(self) -> bool:
        return bool(self.base_config.get("tie_word_embeddings", False))

    @property
    def lora_scaling(self) -> float:
        r, alpha = self.adapter_config["r"], self.adapter_config["lora_alpha"]
        return alpha / r ** 0.5 if self.adapter_config.get("use_rslora") else alpha / r

    def adapter_tensors(self) -> dict[str, Any]:
        from safetensors.torch import load_file

        return load_file(str(self.adapter_dir / ADAPTER_WEIGHTS))

    def trained_rows(self, tensors: dict[str, Any] | None = None):
        """The two trained style rows [terse, verbose] (float32), in payload_meta's order."""
        tensors = self.adapter_tensors() if tensors is None else tensors
        deltas = [n for n in tensors if n.endswith(DELTA_SUFFIX)]
        if len(deltas) != 1:
            raise ExportRefused(f"{self.adapter_dir}: expected one {DELTA_SUFFIX} tensor, found {len(deltas)}",
                                hint="export an adapter written by remote_payload.train")
        indices = list(self.adapter_config["trainable_token_indices"]["embed_tokens"])
        rows = tensors[deltas[0]].float()
        return rows[[indices.index(i) for i in self.style_ids]]

    def base_rows(self, ids: list[int]):
        name = find_tensor(self.base_files, "embed_tokens.weight")
        if name is None:
            raise ExportRefused(f"{self.model_dir}: no embed_tokens.weight tensor in the checkpoint")
        return read_rows(self.base_files[name], name, ids).float()

    def describe(self) -> dict[str, Any]:
        return {"model_dir": str(self.model_dir), "adapter": str(self.adapter_dir),
                "architecture": self.architecture, "base_vocab_size": self.base_vocab,
                "style_ids": self.style_ids, "uses_spare_rows": bool(self.style["uses_spare_rows"])}


def load_source(model_dir: str | Path, adapter_dir: str | Path) -> ExportSource:
    """Read and cross-check a training adapter and its base model directory."""
    model_dir, adapter_dir = check_model_dir(model_dir), Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise ExportRefused(f"{adapter_dir} is not a peft adapter (adapter_config.json missing)",
                            hint="pass the adapter/ directory of a training run (RUN/adapter)")
    meta = read_adapter_meta(adapter_dir)
    adapter_config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    base_config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    if adapter_config.get("peft_type") != "LORA":
        raise ExportRefused(f"{adapter_dir}: peft_type {adapter_config.get('peft_type')!r}, expected LORA")
    if adapter_config.get("use_dora") or adapter_config.get("lora_bias"):
        raise ExportRefused(f"{adapter_dir}: DoRA / LoRA bias adapters are not served by vLLM",
                            hint="use --format merged")
    indices = (adapter_config.get("trainable_token_indices") or {}).get("embed_tokens")
    source = ExportSource(model_dir, adapter_dir, meta, adapter_config, base_config, base_weight_files(model_dir))
    if sorted(indices or []) != sorted(source.style_ids):
        raise ExportRefused(f"{adapter_dir}: trainable_token_indices {indices} do not hold the style ids "
                            f"{source.style_ids} of payload_meta.json", hint="export an adapter written by "
                            "remote_payload.train, unmodified")
    trained_sha = meta.get("base_model", {}).get("config_sha256")
    if trained_sha and trained_sha != file_sha256(model_dir / "config.json"):
        raise ExportRefused(f"{model_dir}/config.json differs from the base {adapter_dir} was trained on "
                            f"({meta['base_model'].get('dir_name')})", hint="pass the base model of the training run")
    if source.style["embedding_rows"] != source.base_vocab:
        raise ExportRefused(f"{model_dir} has {source.base_vocab} embedding rows, the adapter was trained on a base "
                            f"with {source.style['embedding_rows']}", hint="pass the base model of the training run")
    return source


def copy_tokenizer(source: ExportSource, out: Path) -> list[str]:
    """The adapter's tokenizer (it holds the style tokens; vLLM's --tokenizer must point at one that does)."""
    import shutil

    copied = []
    for name in TOKENIZER_FILES:
        if (source.adapter_dir / name).is_file():
            shutil.copy2(source.adapter_dir / name, out / name)
            copied.append(name)
    if "tokenizer_config.json" not in copied:
        raise ExportRefused(f"{source.adapter_dir} has no tokenizer files", hint="the training run saves them; "
                            "pass an unmodified RUN/adapter")
    return copied
