"""The shape of a decoder-only model, read from its `config.json`: layers, linear layers, parameter counts.

Qwen3, Qwen2, Llama and Mistral share one block: RMSNorm -> q/k/v projections -> rotary attention -> o_proj ->
RMSNorm -> SwiGLU MLP (gate_proj, up_proj, down_proj). Qwen3 adds an RMSNorm over each head of q and k; Qwen2
adds biases to q/k/v. Mixture-of-experts and vision-language configs are refused by name: their memory is not
this block's.

Published counts this reproduces (tests/test_plan_memory.py): Qwen3-8B 8.19B parameters, 6.95B without the
embeddings; Qwen3-14B 14.77B and 13.21B (the model cards round them to 8.2/6.95 and 14.8/13.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import InputError

SUPPORTED = ("qwen3", "qwen2", "llama", "mistral")
BLOCK_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
REQUIRED = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")


@dataclass(frozen=True)
class Linear:
    """One linear layer of a decoder block: y = x W^T, W of shape (out_features, in_features)."""

    name: str
    in_features: int
    out_features: int
    bias: bool = False

    @property
    def params(self) -> int:
        return self.in_features * self.out_features


@dataclass(frozen=True)
class ModelShape:
    model_type: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied_embeddings: bool

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def has_qk_norm(self) -> bool:
        return self.model_type == "qwen3"

    def linears(self) -> tuple[Linear, ...]:
        """The linear layers of one block, in forward order (what bitsandbytes quantizes and LoRA targets)."""
        h, i, qkv_bias = self.hidden, self.intermediate, self.model_type == "qwen2"
        return (Linear("q_proj", h, self.q_dim, qkv_bias), Linear("k_proj", h, self.kv_dim, qkv_bias),
                Linear("v_proj", h, self.kv_dim, qkv_bias), Linear("o_proj", self.q_dim, h),
                Linear("gate_proj", h, i), Linear("up_proj", h, i), Linear("down_proj", i, h))

    @property
    def block_linear_params(self) -> int:
        return sum(lin.params for lin in self.linears())

    @property
    def quantized_params(self) -> int:
        """Weights bitsandbytes stores in 4 bits: every block linear (never the embeddings or lm_head)."""
        return self.layers * self.block_linear_params

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def head_params(self) -> int:
        """lm_head's own weights: none when it is tied to the input embedding."""
        return 0 if self.tied_embeddings else self.vocab * self.hidden

    @property
    def small_params(self) -> int:
        """Norm weights and biases: kept in floating point like the embeddings."""
        per_layer = 2 * self.hidden + (2 * self.head_dim if self.has_qk_norm else 0)
        per_layer += sum(lin.out_features for lin in self.linears() if lin.bias)
        return self.layers * per_layer + self.hidden

    @property
    def total_params(self) -> int:
        return self.quantized_params + self.embedding_params + self.head_params + self.small_params

    @property
    def non_embedding_params(self) -> int:
        return self.quantized_params + self.small_params

    def to_json(self) -> dict[str, Any]:
        return {"model_type": self.model_type, "hidden_size": self.hidden, "intermediate_size": self.intermediate,
                "num_hidden_layers": self.layers, "num_attention_heads": self.heads,
                "num_key_value_heads": self.kv_heads, "head_dim": self.head_dim, "vocab_size": self.vocab,
                "tie_word_embeddings": self.tied_embeddings, "total_params": self.total_params,
                "quantized_params": self.quantized_params}


def _positive_int(config: dict, key: str, where: str) -> int:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InputError(f"{where}: {key} must be a positive integer, got {value!r}",
                         hint="pass the model's own config.json (--model-config FILE)")
    return value


def shape_from_config(config: Any, where: str = "config.json") -> ModelShape:
    """A `ModelShape` from a Hugging Face config.json dict; refuses what the planner does not model."""
    if not isinstance(config, dict):
        raise InputError(f"{where} must be a JSON object, got {type(config).__name__}")
    model_type = str(config.get("model_type") or "").lower()
    if "num_experts" in config or "num_local_experts" in config or model_type.endswith("_moe"):
        raise InputError(f"{where}: {model_type or 'this model'} is a mixture-of-experts model; the planner models "
                         f"dense decoders only ({', '.join(SUPPORTED)})")
    if model_type not in SUPPORTED:
        hint = "text_config holds the language model of a vision-language config" if "text_config" in config else \
            f"supported model_type values: {', '.join(SUPPORTED)}"
        raise InputError(f"{where}: model_type {model_type or '(missing)'!r} is not modelled", hint=hint)
    values = {key: _positive_int(config, key, where) for key in REQUIRED}
    heads = values["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or values["hidden_size"] // heads
    kv_heads = _positive_int({"num_key_value_heads": kv_heads}, "num_key_value_heads", where)
    head_dim = _positive_int({"head_dim": head_dim}, "head_dim", where)
    if heads % kv_heads:
        raise InputError(f"{where}: num_attention_heads {heads} is not a multiple of num_key_value_heads {kv_heads}")
    return ModelShape(model_type=model_type, hidden=values["hidden_size"], intermediate=values["intermediate_size"],
                      layers=values["num_hidden_layers"], heads=heads, kv_heads=kv_heads, head_dim=head_dim,
                      vocab=values["vocab_size"], tied_embeddings=bool(config.get("tie_word_embeddings", False)))
