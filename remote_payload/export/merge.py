"""`--format merged`: the adapter merged into a full-precision copy of the base (never into the 4-bit load).

Two ways, same arithmetic (peft's: `W + (B @ A) * scaling` computed in float32, cast to the output dtype; the
style rows copied over the embedding rows, after the same deterministic resize training did):

* `peft`   -- load the whole base in bf16/fp16/fp32 on the GPU (when it fits) or the CPU, attach the adapter,
              `merge_and_unload()`, `save_pretrained`. Needs RAM/VRAM for the whole model.
* `shards` -- stream the base checkpoint one safetensors shard at a time: add each LoRA delta to its weight,
              write the shard, keep the index. Peak memory is one shard plus the adapter, so a 14B bf16 base
              (~30 GB) merges on a 32 GB g5.2xlarge whose A10G cannot hold it.

`--method auto` takes `peft` when the model fits (1.3x its size) in free VRAM or available RAM, else `shards`.
Either way the merged embedding rows at the style ids are then read back from the written files and must
equal the trained rows (cast to the output dtype) exactly.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from ..styles import resize_for_style_tokens
from .source import ExportRefused, ExportSource, find_tensor, read_rows

DTYPES = ("auto", "bfloat16", "float16", "float32")
METHODS = ("auto", "peft", "shards")
FIT_FACTOR = 1.3
_LORA_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<which>[AB])\.weight$")
_DTYPE_BYTES = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "I32": 4, "U8": 1, "I8": 1, "BOOL": 1}


def resolve_dtype(source: ExportSource, name: str) -> str:
    if name != "auto":
        return name
    stored = source.base_config.get("dtype") or source.base_config.get("torch_dtype") or "bfloat16"
    return stored if stored in DTYPES else "bfloat16"


def checkpoint_bytes(source: ExportSource, dtype: str) -> int:
    """Size of the base's weights in `dtype`, from the safetensors headers (nothing is loaded)."""
    from safetensors import safe_open

    width = {"bfloat16": 2, "float16": 2, "float32": 4}[dtype]
    total = 0
    for path in sorted(set(source.base_files.values())):
        with safe_open(str(path), "pt") as handle:
            for name in handle.keys():
                shape = handle.get_slice(name).get_shape()
                count = 1
                for dim in shape:
                    count *= dim
                total += count * width
    return total


def available_ram() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def choose_placement(source: ExportSource, dtype: str, method: str, device: str) -> dict[str, Any]:
    """(method, device) for this merge and the numbers behind the choice."""
    import torch

    need = checkpoint_bytes(source, dtype)
    free_vram = torch.cuda.mem_get_info()[0] if torch.cuda.is_available() else 0
    ram = available_ram()
    if device == "auto":
        device = "cuda" if free_vram > need * FIT_FACTOR else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ExportRefused("--device cuda but torch sees no GPU", hint="use --device cpu or auto")
    fits = (free_vram if device == "cuda" else ram) > need * FIT_FACTOR
    if method == "auto":
        method = "peft" if fits else "shards"
    return {"method": method, "device": device if method == "peft" else "cpu", "model_bytes": need,
            "free_vram_bytes": free_vram, "available_ram_bytes": ram}


def merge_with_peft(source: ExportSource, out: Path, dtype: str, device: str) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from ..modeling import torch_dtype

    model = AutoModelForCausalLM.from_pretrained(str(source.model_dir), dtype=torch_dtype(dtype),
                                                 device_map={"": device})
    if not source.style["uses_spare_rows"]:
        resize_for_style_tokens(model, source.style["required_rows"])
    model = PeftModel.from_pretrained(model, str(source.adapter_dir), is_trainable=False)
    with torch.no_grad():
        merged = model.merge_and_unload()
    merged.save_pretrained(str(out), max_shard_size="5GB")


def _lora_deltas(source: ExportSource) -> dict[str, tuple[Any, Any]]:
    """base weight name -> (A, B) for every LoRA pair of the adapter."""
    pairs: dict[str, dict[str, Any]] = {}
    for name, tensor in source.adapter_tensors().items():
        match = _LORA_KEY.match(name)
        if match:
            pairs.setdefault(f"{match['module']}.weight", {})[match["which"]] = tensor
    if any(len(p) != 2 for p in pairs.values()):
        raise ExportRefused(f"{source.adapter_dir}: a LoRA module lacks its A or B matrix")
    return {name: (p["A"], p["B"]) for name, p in pairs.items()}


def _grow(weight, rows: int):
    """`weight` with rows appended up to `rows`, each the mean of the existing rows (styles.py's resize)."""
    import torch

    old = weight.shape[0]
    extra = weight.float().mean(dim=0).to(weight.dtype).expand(rows - old, -1)
    return torch.cat([weight, extra], dim=0)


def merge_by_shards(source: ExportSource, out: Path, dtype: str) -> None:
    from safetensors.torch import load_file, save_file

    from ..modeling import torch_dtype

    if source.adapter_config.get("rank_pattern") or source.adapter_config.get("alpha_pattern"):
        raise ExportRefused("--method shards does not apply rank/alpha patterns", hint="use --method peft")
    target, scaling = torch_dtype(dtype), source.lora_scaling
    deltas, resize = _lora_deltas(source), not source.style["uses_spare_rows"]
    rows = source.style["required_rows"]
    embed = find_tensor(source.base_files, "embed_tokens.weight")
    head = None if source.tied_embeddings else find_tensor(source.base_files, "lm_head.weight")
    trained = source.trained_rows()
    weight_map, done = {}, set()
    for shard in sorted(set(source.base_files.values())):
        tensors = load_file(str(shard))
        for name in list(tensors):
            tensor = tensors[name]
            tensor = tensor.to(target) if tensor.is_floating_point() else tensor
            if name in deltas:
                a, b = deltas[name]
                tensor = (tensor.float() + (b.float() @ a.float()) * scaling).to(target)
                done.add(name)
            if resize and name in (embed, head):
                tensor = _grow(tensor, rows)
            if name == embed:
                tensor = tensor.clone()
                tensor[source.style_ids] = trained.to(target)
            tensors[name] = tensor.contiguous()
            weight_map[name] = shard.name
        save_file(tensors, str(out / shard.name), metadata={"format": "pt"})
        del tensors
    missing = sorted(set(deltas) - done)
    if missing:
        raise ExportRefused(f"LoRA modules without a base weight: {missing[:3]}", hint="pass the matching base")
    _write_configs(source, out, dtype, rows if resize else source.base_vocab, weight_map)


def _write_configs(source: ExportSource, out: Path, dtype: str, vocab: int, weight_map: dict[str, str]) -> None:
    config = dict(source.base_config)
    config.pop("quantization_config", None)
    config["dtype"] = dtype
    config.pop("torch_dtype", None)
    text = config.get("text_config")
    (text if isinstance(text, dict) else config)["vocab_size"] = vocab
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if (source.model_dir / "generation_config.json").is_file():
        shutil.copy2(source.model_dir / "generation_config.json", out / "generation_config.json")
    if len(set(weight_map.values())) > 1:
        total = sum((out / f).stat().st_size for f in set(weight_map.values()))
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")


def merged_rows_check(source: ExportSource, out: Path, dtype: str) -> dict[str, Any]:
    """The written embedding rows at the style ids equal the trained rows (in the output dtype), exactly."""
    import torch

    from ..modeling import torch_dtype
    from .source import base_weight_files

    files = base_weight_files(out)
    name = find_tensor(files, "embed_tokens.weight")
    written = read_rows(files[name], name, source.style_ids)
    expected = source.trained_rows().to(torch_dtype(dtype))
    equal = bool(torch.equal(written, expected))
    return {"ok": equal, "rows": source.style_ids, "dtype": dtype,
            "max_abs_difference": float((written.float() - expected.float()).abs().max()),
            "problems": [] if equal else [f"embedding rows {source.style_ids} differ from the trained rows"]}


def write_merged(source: ExportSource, out: Path, dtype: str = "auto", method: str = "auto",
                 device: str = "auto") -> dict[str, Any]:
    """Merge into `out`; returns facts for export.json (dtype, method, device, sizes, the rows check)."""
    dtype = resolve_dtype(source, dtype)
    placement = choose_placement(source, dtype, method, device)
    if placement["method"] == "peft":
        merge_with_peft(source, out, dtype, placement["device"])
    else:
        merge_by_shards(source, out, dtype)
    return {"dtype": dtype, **placement, "rows_check": merged_rows_check(source, out, dtype)}
