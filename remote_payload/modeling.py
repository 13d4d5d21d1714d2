"""Loading the base model in 4-bit, attaching LoRA (+ trainable style rows for verbosity), saving and reloading
the adapter.

The adapter directory holds everything a reload needs besides the base weights: peft's adapter files (saved
with `save_embedding_layers=False`: only the LoRA weights and, for verbosity, the two trained style rows), the
tokenizer (with its style tokens), and `payload_meta.json` (resolved recipe, style token ids or null, embedding
rows before/after, the attention implementation trained with). A
reload builds the base exactly as training did -- same 4-bit settings, same spare rows or the same
deterministic resize -- so the `lm_head.weight` size mismatch of seed 000 cannot happen.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .errors import ModelError
from .recipes import Recipe, recipe_from_dict
from .styles import StyleTokens, add_style_tokens, embedding_rows_of, resize_for_style_tokens

META_FILE = "payload_meta.json"
META_FORMAT = 1


def torch_dtype(name: str):
    import torch

    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


def quantization_config(recipe: Recipe):
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=recipe.bnb_4bit_quant_type,
                              bnb_4bit_use_double_quant=recipe.bnb_4bit_use_double_quant,
                              bnb_4bit_compute_dtype=torch_dtype(recipe.compute_dtype))


def device_map(recipe: Recipe) -> dict[str, Any]:
    """Seed 000's device_map={"": 0}: the whole model on the one GPU this process sees; under torchrun
    {"": LOCAL_RANK}, the only layout accelerate accepts for a 4-bit model in DDP."""
    import torch

    if recipe.device == "cpu":
        return {"": "cpu"}
    if not torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        raise ModelError(f"recipe '{recipe.name}' needs a CUDA GPU but torch sees none "
                         f"(torch {torch.__version__}, CUDA_VISIBLE_DEVICES={visible!r})",
                         hint="check the driver with nvidia-smi and that the venv has a CUDA build of torch")
    return {"": int(os.environ.get("LOCAL_RANK", 0))}   # torchrun: rank K on the K-th visible GPU


def _starts_with(path: Path, magic: bytes) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(magic)) == magic


def check_model_dir(model_dir: str | Path) -> Path:
    path = Path(model_dir)
    if not (path / "config.json").is_file():
        raise ModelError(f"no model at {path} (config.json missing)",
                         hint="sync the weights to the instance's models_dir first (orch sync-weights)")
    gzipped = sorted(p.name for p in path.glob("*.json") if _starts_with(p, b"\x1f\x8b"))
    if gzipped:  # seen in seed 000: S3 objects stored gzip-compressed, copied as-is
        raise ModelError(f"{path}: {', '.join(gzipped)} are gzip-compressed, not JSON",
                         hint="decompress them in place (gunzip -c f > f.tmp && mv f.tmp f) or re-sync the weights")
    return path


def load_tokenizer(path: str | Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if tokenizer.pad_token_id is None:  # Mistral ships none; pads are masked out of loss and attention
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def prepare_tokenizer(model_dir: str | Path, style_tokens: bool = True) -> tuple[Any, StyleTokens | None]:
    """The base tokenizer -- with both style tokens added, and where they sit in the embedding, when the task
    uses them (verbosity); (tokenizer, None) otherwise."""
    tokenizer = load_tokenizer(check_model_dir(model_dir))
    if not style_tokens:
        return tokenizer, None
    return tokenizer, add_style_tokens(tokenizer, embedding_rows_of(model_dir))


def load_base_model(model_dir: str | Path, recipe: Recipe, attn_implementation: str | None = None):
    """The base model in 4-bit as the recipe says; refuses to continue if it is not 4-bit."""
    from transformers import AutoModelForCausalLM

    path = check_model_dir(model_dir)
    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    model = AutoModelForCausalLM.from_pretrained(
        str(path), quantization_config=quantization_config(recipe), dtype=torch_dtype(recipe.compute_dtype),
        device_map=device_map(recipe), **extra)
    if not getattr(model, "is_loaded_in_4bit", False):
        raise ModelError(f"{path} did not load in 4-bit (is_loaded_in_4bit is false); refusing to train",
                         hint="check that bitsandbytes imports cleanly in this venv")
    model.config.use_cache = False
    return model


def attach_lora(model, recipe: Recipe, style: StyleTokens | None):
    """Resize if the style tokens need it, prepare for k-bit training, wrap with LoRA (+ trainable tokens)."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if style is not None and style.needs_resize:
        resize_for_style_tokens(model, style.required_rows)
    # Freezes the base and upcasts the non-quantized weights to fp32. Activation checkpointing is switched on by
    # the Trainer (TrainingArguments.activation_checkpointing, non-reentrant, so no input-grad hook is needed).
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    config = LoraConfig(r=recipe.lora_r, lora_alpha=recipe.lora_alpha, lora_dropout=recipe.lora_dropout,
                        bias="none", task_type="CAUSAL_LM", target_modules=recipe.lora_targets,
                        trainable_token_indices={"embed_tokens": style.ids} if style is not None else None)
    return get_peft_model(model, config)


def parameter_counts(model) -> dict[str, Any]:
    """Trainable/total parameters (4-bit weights count as stored elements) and the 4-bit layer count."""
    import bitsandbytes as bnb

    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    linear4bit = sum(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    return {"trainable": trainable, "total": sum(p.numel() for p in model.parameters()),
            "loaded_in_4bit": bool(getattr(model, "is_loaded_in_4bit", False)), "linear4bit_layers": linear4bit}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def chat_template_sha256(tokenizer) -> str | None:
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        return None
    text = template if isinstance(template, str) else json.dumps(template, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def adapter_meta(recipe: Recipe, style: StyleTokens | None, tokenizer, model_dir: str | Path,
                 attention: dict[str, Any] | None = None) -> dict[str, Any]:
    config = Path(model_dir) / "config.json"
    return {"format": META_FORMAT, "recipe": recipe.to_dict(), "task": recipe.task,
            "style_tokens": style.to_dict() if style is not None else None, "attention": attention,
            "chat_template_sha256": chat_template_sha256(tokenizer),
            "base_model": {"dir_name": Path(model_dir).name, "config_sha256": file_sha256(config)}}


def save_adapter(model, tokenizer, out_dir: Path, meta: dict[str, Any]) -> Path:
    """LoRA weights + the two style rows (no full embedding), tokenizer, payload_meta.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir), save_embedding_layers=False)
    tokenizer.save_pretrained(str(out_dir))
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return out_dir


def read_adapter_meta(adapter_dir: str | Path) -> dict[str, Any]:
    path = Path(adapter_dir) / META_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read {path}: {exc}", hint="pass the adapter/ directory a training run wrote")
    if meta.get("format") != META_FORMAT:
        raise ModelError(f"{path}: unsupported format {meta.get('format')!r} (this payload reads {META_FORMAT})")
    return meta


def _check_style_tokens(tokenizer, model_dir, adapter_dir, stored: dict) -> StyleTokens:
    style = add_style_tokens(tokenizer, embedding_rows_of(model_dir))
    if style.ids != [stored["terse_id"], stored["verbose_id"]] or style.embedding_rows != stored["embedding_rows"]:
        raise ModelError(f"adapter {adapter_dir} does not match base {model_dir}: style ids/rows "
                         f"{style.ids}/{style.embedding_rows} here, {stored['terse_id']},{stored['verbose_id']}/"
                         f"{stored['embedding_rows']} at training", hint="use the base model it was trained on")
    return style


def load_for_inference(model_dir: str | Path, adapter_dir: str | Path):
    """(model, tokenizer, recipe, meta): the 4-bit base + adapter, ready for `generate`."""
    from peft import PeftModel

    from .attention import choose_attention
    from .runtime_env import apply_torch_threads

    meta = read_adapter_meta(adapter_dir)
    recipe = recipe_from_dict(meta["recipe"])
    apply_torch_threads(recipe.torch_threads)
    tokenizer = load_tokenizer(adapter_dir)
    stored = meta.get("style_tokens")
    style = _check_style_tokens(tokenizer, model_dir, adapter_dir, stored) if stored else None
    model = load_base_model(model_dir, recipe, choose_attention(recipe, model_dir)["chosen"])
    if style is not None and style.needs_resize:
        resize_for_style_tokens(model, style.required_rows)
    model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=False)
    model.eval()
    model.config.use_cache = True
    return model, tokenizer, recipe, meta
