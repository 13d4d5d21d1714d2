"""The two checks every export ends with.

1. `vllm_keys`: the directory holds only what vLLM loads. For a LoRA: no `trainable_token_indices` or
   `modules_to_save` in adapter_config.json, no DoRA/LoRA bias, and every tensor name one vLLM's
   `parse_fine_tuned_lora_name` accepts (`...lora_A.weight`, `...lora_B.weight`, `...lora_embedding_A/B`), the
   embedding LoRA as wide as the base vocabulary. For a merged model: no adapter files, no peft names
   (`lora_`, `base_layer`, `trainable_tokens`, `modules_to_save`) in the weights, no bitsandbytes
   quantization_config, an embedding as tall as config.json's vocab_size.
2. `lengths`: TERSE and VERBOSE answer lengths of the export equal those of the original peft adapter, prompt by
   prompt, on the evaluation prompts with the recipe's presets (evaluate.py's generation). Both run on the same
   full-precision base load, so the check isolates what the export changed; the 4-bit training evaluation
   (RUN/eval.json) is reported next to it, not compared (merging into full precision is not the 4-bit model).
   In float32 the lengths must be identical; in bfloat16/float16 a merged weight is rounded once where the
   adapter rounds W and BA apart, which moves some greedy answers by a few tokens (measured on the tiny model),
   so there each style's mean must stay within 10% of the adapter's and the ratio must keep the recipe's gate.
"""

from __future__ import annotations

import gc
import json
import re
from pathlib import Path
from typing import Any

from .source import ExportSource, base_weight_files, find_tensor

_ACCEPTED_LORA = re.compile(r"\.(lora_A\.weight|lora_B\.weight|lora_embedding_A|lora_embedding_B)$")
_PEFT_MARKERS = ("lora_", "base_layer", "trainable_tokens", "modules_to_save", "original_module")
LORA_MODULES = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "embed_tokens",
                "lm_head", "qkv_proj", "gate_up_proj", "dense", "fc1", "fc2"}


def _tensor_shapes(directory: Path) -> dict[str, list[int]]:
    from safetensors import safe_open

    shapes = {}
    for path in sorted(set(base_weight_files(directory).values())):
        with safe_open(str(path), "pt") as handle:
            for name in handle.keys():
                shapes[name] = list(handle.get_slice(name).get_shape())
    return shapes


def lora_key_problems(directory: Path, base_vocab: int) -> list[str]:
    from safetensors import safe_open

    problems = []
    config = json.loads((directory / "adapter_config.json").read_text(encoding="utf-8"))
    for key in ("trainable_token_indices", "modules_to_save", "use_dora", "lora_bias", "layer_replication"):
        if config.get(key):
            problems.append(f"adapter_config.json sets {key}={config[key]!r}")
    if config.get("peft_type") != "LORA":
        problems.append(f"adapter_config.json peft_type is {config.get('peft_type')!r}, not LORA")
    with safe_open(str(directory / "adapter_model.safetensors"), "pt") as handle:
        for name in handle.keys():
            if not _ACCEPTED_LORA.search(name):
                problems.append(f"weight {name} is not a LoRA weight vLLM loads")
                continue
            module = name.rsplit(".", 2 if name.endswith(".weight") else 1)[0].rsplit(".", 1)[-1]
            if module not in LORA_MODULES:
                problems.append(f"weight {name} targets {module}, which vLLM does not adapt")
            if name.endswith("lora_embedding_A") and handle.get_slice(name).get_shape()[1] != base_vocab:
                problems.append(f"{name} spans {handle.get_slice(name).get_shape()[1]} tokens, the base has "
                                f"{base_vocab}: vLLM requires them equal")
    return problems


def merged_key_problems(directory: Path, allow_quantization: str | None = None) -> list[str]:
    problems = [f"{name} is present: a merged model carries no adapter files"
                for name in ("adapter_config.json", "adapter_model.safetensors") if (directory / name).exists()]
    config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    quant = (config.get("quantization_config") or {}).get("quant_method")
    if quant and quant != allow_quantization:
        problems.append(f"config.json has quantization_config quant_method={quant!r}")
    shapes = _tensor_shapes(directory)
    problems += [f"weight {n} has a peft name" for n in shapes if any(m in n for m in _PEFT_MARKERS)]
    embed = find_tensor({n: directory for n in shapes}, "embed_tokens.weight")
    vocab = int((config.get("text_config") or config)["vocab_size"])
    if embed is None:
        problems.append("no embed_tokens.weight in the weights")
    elif shapes[embed][0] != vocab:
        problems.append(f"{embed} has {shapes[embed][0]} rows, config.json vocab_size is {vocab}")
    return problems


def vllm_keys_check(kind: str, directory: Path, base_vocab: int) -> dict[str, Any]:
    problems = lora_key_problems(directory, base_vocab) if kind == "lora" else merged_key_problems(directory)
    return {"ok": not problems, "problems": problems}


# --- lengths -------------------------------------------------------------------------------------------------

def _load(model_dir: Path, dtype: str, device: str, resize_to: int | None, adapter: Path | None, recipe=None):
    """The base in `dtype` on `device` (or, with `recipe`, in 4-bit exactly as training loaded it) + `adapter`."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from ..modeling import load_base_model, torch_dtype
    from ..styles import resize_for_style_tokens

    if recipe is not None:
        model = load_base_model(model_dir, recipe)
    else:
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch_dtype(dtype),
                                                     device_map={"": device})
    if resize_to:
        resize_for_style_tokens(model, resize_to)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
    model.eval()
    model.config.use_cache = True
    return model


def answer_lengths(model, tokenizer, recipe, prompts: list[str]) -> dict[str, list[int]]:
    from ..evaluate import generate_answers

    section = recipe.evaluation
    presets = {"TERSE": section.terse, "VERBOSE": section.verbose}
    return {style: [a["tokens"] for a in generate_answers(model, tokenizer, prompts, style, preset,
                                                          recipe.chat_template_kwargs, section.batch_size,
                                                          recipe.seed)]
            for style, preset in presets.items()}


def summarize(lengths: dict[str, list[int]]) -> dict[str, Any]:
    means = {s: round(sum(v) / len(v), 3) for s, v in lengths.items()}
    ratio = round(means["VERBOSE"] / means["TERSE"], 3) if means["TERSE"] else None
    return {"tokens": lengths, "mean_tokens": means, "ratio": ratio}


LOW_PRECISION_TOLERANCE = 0.10


def low_precision_problems(original: dict, exported: dict, gate: float) -> list[str]:
    """bf16/fp16: W + BA rounded once (merged) is not W and BA rounded apart (adapter), so greedy answers can
    drift by a few tokens; the styles' mean lengths must stay within the tolerance and keep the gate."""
    problems = []
    for style, before in original["mean_tokens"].items():
        after = exported["mean_tokens"][style]
        if abs(after - before) > max(1.0, LOW_PRECISION_TOLERANCE * before):
            problems.append(f"{style} mean length {after} differs from the adapter's {before} by more than "
                            f"{LOW_PRECISION_TOLERANCE:.0%}")
    if exported["ratio"] is None or exported["ratio"] < gate:
        problems.append(f"VERBOSE/TERSE ratio {exported['ratio']} is below the gate {gate}")
    return problems


def lengths_check(source: ExportSource, kind: str, out: Path, dtype: str, device: str,
                  prompts: list[str], load: str = "full") -> dict[str, Any]:
    """Generate with the original adapter, then with the export, and compare the answer lengths.

    `load="4bit"` (lora exports only) puts both on the base loaded in 4-bit exactly as training did, so a 14B
    base whose bf16 copy does not fit the GPU is still checked on the GPU, prompt by prompt."""
    from ..modeling import load_tokenizer
    from ..runtime_env import apply_torch_threads

    recipe = source.recipe
    apply_torch_threads(recipe.torch_threads)
    tokenizer = load_tokenizer(source.adapter_dir)
    resize = None if source.style["uses_spare_rows"] else source.style["required_rows"]
    four_bit = recipe if load == "4bit" else None
    if four_bit is not None and kind != "lora":
        raise ValueError("the 4-bit check load applies to lora exports (a merged model is checked as written)")
    original = _load(source.model_dir, dtype, device, resize, source.adapter_dir, four_bit)
    before = answer_lengths(original, tokenizer, recipe, prompts)
    del original
    gc.collect()
    exported = (_load(out, dtype, device, None, None) if kind == "merged"
                else _load(source.model_dir, dtype, device, None, out, four_bit))
    after = answer_lengths(exported, tokenizer, recipe, prompts)
    del exported
    gc.collect()
    differing = [f"{style} answer to {prompts[i]!r}: {a} tokens from the export, {b} from the adapter"
                 for style in before for i, (b, a) in enumerate(zip(before[style], after[style])) if a != b]
    original, exported = summarize(before), summarize(after)
    if dtype == "float32" or four_bit is not None:
        criterion, problems = "identical per-prompt lengths", differing
    else:
        criterion = (f"means within {LOW_PRECISION_TOLERANCE:.0%} and ratio >= gate ({dtype}: rounding merged "
                     "weights moves some greedy answers)")
        problems = low_precision_problems(original, exported, recipe.evaluation.gate)
    report = {"ok": not problems, "criterion": criterion, "prompts": len(prompts),
              "dtype": "4-bit (as trained)" if four_bit is not None else dtype, "device": device, "original_adapter": original, "export": exported,
              "equal_answers": {s: sum(a == b for a, b in zip(before[s], after[s])) for s in before},
              "problems": (problems + differing)[:10] if problems else []}
    training_eval = source.adapter_dir.parent / "eval.json"
    if training_eval.is_file():
        stored = json.loads(training_eval.read_text(encoding="utf-8"))
        report["training_eval_4bit"] = {"ratio": stored.get("ratio"), "mean_tokens": {
            s: v.get("mean_tokens") for s, v in stored.get("styles", {}).items()}}
    return report
