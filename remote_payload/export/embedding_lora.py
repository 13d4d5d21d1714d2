"""`--format lora`: the training adapter rewritten as a plain LoRA that vLLM serves on the unchanged base.

vLLM refuses peft's `trainable_tokens_delta` and has no extra-vocabulary LoRA any more, but it does serve an
*embedding LoRA* (`lora_embedding_A` [r, vocab], `lora_embedding_B` [hidden, r]) whose vocabulary equals the
base's. The embedding then reads `row(t) + scaling * B @ A[:, t]`, so the two trained rows are written exactly as

    A[0, terse_id] = A[1, verbose_id] = 1 (every other entry 0)
    B[:, 0] = (trained terse row - base row at terse_id) / scaling,  B[:, 1] likewise,  other columns 0

at the recipe's rank r (so no rank_pattern is needed), next to the unchanged attention/MLP LoRA weights.
This needs the style rows *inside* the base vocabulary (Qwen3's spare rows) and a vLLM model class with an
embedding LoRA; otherwise the export is refused with the reason and `--format merged` as the way out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .source import DELTA_SUFFIX, ExportRefused, ExportSource

# vLLM 0.32.0 model classes that support LoRA *and* list "embed_tokens" in `embedding_modules` (read from
# vllm.model_executor.models.registry; tests/test_serve_vllm_facts.py re-reads it from the serving venv, so a
# vLLM upgrade that changes the list fails that test). MistralForCausalLM sets `embedding_modules = {}`
# ("We don't support LoRA on the embedding layers"), and so does Qwen2ForCausalLM.
EMBEDDING_LORA_ARCHITECTURES = frozenset({
    "ApertusForCausalLM", "Cohere2ForCausalLM", "CohereForCausalLM", "DeciLMForCausalLM", "Ernie4_5ForCausalLM",
    "Exaone4ForCausalLM", "ExaoneMoEForCausalLM", "ExaoneMoeForCausalLM", "FalconH1ForCausalLM",
    "GraniteForCausalLM", "GraniteMoeForCausalLM", "GraniteMoeHybridForCausalLM", "GraniteMoeSWAForCausalLM",
    "GraniteMoeSharedForCausalLM", "GraniteSWAForCausalLM", "HyperCLOVAXForCausalLM", "IQuestCoderForCausalLM",
    "InternLM3ForCausalLM", "JambaForCausalLM", "K2HorizonForCausalLM", "LLaMAForCausalLM", "Lfm2ForCausalLM",
    "Lfm2MoeForCausalLM", "Llama4ForCausalLM", "LlamaForCausalLM", "MiniCPM3ForCausalLM", "MiniCPMForCausalLM",
    "MixtralForCausalLM", "NemotronForCausalLM", "NemotronHForCausalLM", "NemotronHPuzzleForCausalLM",
    "Param2MoEForCausalLM", "Phi3ForCausalLM", "PhiMoEForCausalLM", "Qwen3ForCausalLM", "Qwen3MoeForCausalLM",
    "SolarForCausalLM", "TeleChat2ForCausalLM", "TeleChat3ForCausalLM", "TeleFLMForCausalLM",
})
VLLM_VERSION_OF_TABLE = "0.32.0"
EMBED_PREFIX = "base_model.model.model.embed_tokens"


def lora_refusal(source: ExportSource) -> str | None:
    """Why `--format lora` is impossible for this adapter + base, or None."""
    reasons = []
    if not source.style["uses_spare_rows"]:
        reasons.append(f"the style tokens {source.style_ids} lie past the base vocabulary ({source.base_vocab} "
                       f"rows; training resized the embedding to {source.style['required_rows']}), and vLLM's "
                       "embedding LoRA must have exactly the base's vocabulary")
    elif max(source.style_ids) >= source.base_vocab:
        reasons.append(f"style token ids {source.style_ids} are not below the base vocabulary ({source.base_vocab})")
    if source.architecture not in EMBEDDING_LORA_ARCHITECTURES:
        reasons.append(f"vLLM {VLLM_VERSION_OF_TABLE} gives {source.architecture} no embedding LoRA "
                       "(its embedding_modules has no embed_tokens)")
    if source.adapter_config.get("modules_to_save"):
        reasons.append(f"the adapter saves full modules {source.adapter_config['modules_to_save']}")
    return "; ".join(reasons) or None


def check_lora_possible(source: ExportSource) -> None:
    reason = lora_refusal(source)
    if reason:
        raise ExportRefused(f"--format lora is impossible for {source.adapter_dir}: {reason}",
                            hint="use --format merged: it writes the trained rows into a merged model "
                                 "(remote_payload.quantize / orch export --quantize w4a16 then shrinks it)")


def embedding_lora_tensors(source: ExportSource, tensors: dict[str, Any]) -> dict[str, Any]:
    """The adapter's LoRA tensors without the trainable-token rows, plus the equivalent embedding LoRA."""
    import torch

    r, scaling = source.adapter_config["r"], source.lora_scaling
    trained, base = source.trained_rows(tensors), source.base_rows(source.style_ids)
    lora_a = torch.zeros(r, source.base_vocab, dtype=torch.float32)
    lora_b = torch.zeros(source.hidden_size, r, dtype=torch.float32)
    for column, (token_id, row, base_row) in enumerate(zip(source.style_ids, trained, base)):
        lora_a[column, token_id] = 1.0
        lora_b[:, column] = (row - base_row) / scaling
    out = {name: t.contiguous() for name, t in tensors.items() if not name.endswith(DELTA_SUFFIX)}
    out[f"{EMBED_PREFIX}.lora_embedding_A"] = lora_a
    out[f"{EMBED_PREFIX}.lora_embedding_B"] = lora_b
    return out


def lora_adapter_config(source: ExportSource) -> dict[str, Any]:
    config = dict(source.adapter_config)
    targets = config.get("target_modules")
    targets = [targets] if isinstance(targets, str) else list(targets or [])
    if not any(t == "embed_tokens" or t.endswith(".embed_tokens") for t in targets):
        targets.append("model.embed_tokens")
    pattern_hits = [k for k in (*config.get("rank_pattern", {}), *config.get("alpha_pattern", {}))
                    if "embed_tokens" in k]
    if pattern_hits:
        raise ExportRefused(f"{source.adapter_dir}: rank/alpha patterns {pattern_hits} touch embed_tokens",
                            hint="use --format merged")
    config.update(target_modules=sorted(targets), trainable_token_indices=None, modules_to_save=None,
                  base_model_name_or_path=source.meta.get("base_model", {}).get("dir_name"), inference_mode=True)
    return config


def write_lora(source: ExportSource, out: Path) -> dict[str, Any]:
    """adapter_model.safetensors + adapter_config.json in `out`; returns facts for export.json."""
    from safetensors.torch import save_file

    check_lora_possible(source)
    tensors = embedding_lora_tensors(source, source.adapter_tensors())
    save_file(tensors, str(out / "adapter_model.safetensors"), metadata={"format": "pt"})
    config = lora_adapter_config(source)
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    ranks = [config["r"], *config.get("rank_pattern", {}).values()]
    return {"max_rank": max(ranks), "scaling": source.lora_scaling, "tensors": len(tensors),
            "embedding_lora": {"rows": source.style_ids, "vocab_size": source.base_vocab}}
