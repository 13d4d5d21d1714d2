"""Memory that scales with the tokens of a micro-batch: what autograd saves per layer, the logits at the loss.

Counted tensor by tensor from what torch 2.13 / transformers 5.23 / peft 0.21 / bitsandbytes 0.50 save for
backward in a Qwen3/Llama block under bf16 autocast (read off the autograd graph of a model the payload loaded,
and checked on CPU against torch's own memory profile: tests/test_plan_activations.py). Per token, with
a = bytes of the residual stream (4 after peft's fp32 upcast, else 2), c = compute dtype bytes (2 for bf16):

* each RMSNorm keeps its input in fp32 (4 B x width): two per block, plus Qwen3's q_norm/k_norm per head;
* a 4-bit base layer saves nothing of its input (bitsandbytes' MatMul4Bit keeps only the packed weight);
* every LoRA-wrapped layer keeps its own dropout output cast to bf16 (in_features x c), the dropout mask
  (1 B on CUDA, `a` B on CPU) and the input of B (r x c);
* attention (sdpa / flash) keeps q, k, v and the output in bf16, and a fp32 logsumexp per head. With a padding
  mask (batch > 1) transformers' sdpa path repeats the k/v heads first, so k and v are kept at full head count;
* the SwiGLU MLP keeps gate and up outputs and silu(gate), in the residual dtype (Linear4bit returns its
  input's dtype);
* gradient checkpointing (HF's, per decoder layer, non-reentrant) keeps only each layer's input hidden states
  until backward recomputes that layer.
"""

from __future__ import annotations

from .setup import Setup
from .shape import ModelShape
from .states import lora_targets


def _kv_width(shape: ModelShape, setup: Setup, batch: int) -> int:
    if setup.attention == "flash_attention_2":
        return shape.kv_dim
    return shape.q_dim if (batch > 1 or setup.attention == "eager") else shape.kv_dim


def _lora_saved(shape: ModelShape, setup: Setup) -> int:
    """Bytes per token of the LoRA branches of one block."""
    a, c = setup.residual_bytes, setup.compute_bytes
    targets = lora_targets(shape, setup)
    b_inputs = len(targets) * setup.lora_r * c
    if setup.lora_dropout > 0:
        mask = 1 if setup.device == "cuda" else a
        return sum(lin.in_features * (c + mask) for lin in targets) + b_inputs
    if a != c:   # autocast casts the input once per layer (it caches casts of leaf weights only)
        return sum(lin.in_features * c for lin in targets) + b_inputs
    groups = {"q_proj": "attn_in", "k_proj": "attn_in", "v_proj": "attn_in", "gate_proj": "mlp_in",
              "up_proj": "mlp_in", "o_proj": "attn_out", "down_proj": "mlp_act"}
    shared = {groups[lin.name]: lin.in_features for lin in targets}   # the same input tensor, saved once
    return sum(shared.values()) * c + b_inputs


def layer_bytes_per_token(shape: ModelShape, setup: Setup, batch: int, seq: int) -> dict[str, int]:
    """What one decoder block saves for backward, per token of the micro-batch."""
    a, c = setup.residual_bytes, setup.compute_bytes
    parts = {"RMSNorm inputs (fp32)": 2 * 4 * shape.hidden}
    if shape.has_qk_norm:
        parts["q/k norm inputs (fp32)"] = 4 * (shape.q_dim + shape.kv_dim)
    kv = _kv_width(shape, setup, batch)
    parts["attention q, k, v, output"] = c * (2 * shape.q_dim + 2 * kv) + 4 * shape.heads
    if setup.attention == "eager":
        parts["attention probabilities"] = shape.heads * seq * (4 + c)
    if setup.loss == "fused_linear":   # Liger also swaps in its SiLU-mul kernel, which recomputes silu(gate)
        parts["SwiGLU gate, up"] = 2 * shape.intermediate * a
    else:
        parts["SwiGLU gate, up, silu(gate)"] = 3 * shape.intermediate * a
    parts["LoRA inputs and dropout masks"] = _lora_saved(shape, setup)
    return parts


def stored_activations(shape: ModelShape, setup: Setup, batch: int, seq: int) -> dict[str, int]:
    """Saved for backward over the whole model when the forward pass reaches the loss."""
    tokens = batch * seq
    final_norm = 4 * shape.hidden * tokens
    rope = 2 * seq * shape.head_dim * 4
    if setup.gradient_checkpointing:
        return {"checkpointed layer inputs": shape.layers * shape.hidden * setup.residual_bytes * tokens,
                "final norm and rotary tables": final_norm + rope}
    per_token = sum(layer_bytes_per_token(shape, setup, batch, seq).values())
    return {"every layer's saved tensors": shape.layers * per_token * tokens,
            "final norm and rotary tables": final_norm + rope}


def layer_backward_bytes(shape: ModelShape, setup: Setup, batch: int, seq: int) -> dict[str, int]:
    """Extra memory while backward runs through one block: with checkpointing its recomputed saved tensors;
    always the gradients in flight (the residual's, and the MLP's two intermediate ones)."""
    tokens = batch * seq
    a = setup.residual_bytes
    parts = {}
    if setup.gradient_checkpointing:
        parts["one layer recomputed"] = sum(layer_bytes_per_token(shape, setup, batch, seq).values()) * tokens
    parts["gradients in flight"] = (2 * shape.hidden + 2 * shape.intermediate) * a * tokens
    return parts


def logits_bytes(shape: ModelShape, setup: Setup, batch: int, seq: int) -> tuple[dict[str, int], str]:
    """The largest set of vocabulary-sized tensors alive at once around the loss, and which moment that is."""
    tv = batch * seq * shape.vocab
    c = setup.compute_bytes
    if setup.loss == "fused_linear":
        # Liger's fused linear cross-entropy: chunks of ~tokens*hidden/vocab rows of logits, the input gradient
        tokens = batch * seq
        return {"logit chunks (fp32)": 4 * shape.hidden * tokens,
                "hidden-state gradient": (4 + c) * shape.hidden * tokens}, "fused linear cross-entropy"
    backward = {"log-softmax output (saved)": 4 * tv, "its incoming gradient": 4 * tv, "its input gradient": 4 * tv}
    if setup.loss == "shift_logits":
        forward = {"fp32 logits": 4 * tv, "shifted contiguous copy": 4 * tv, "log-softmax output": 4 * tv}
    else:
        forward = {f"logits ({setup.compute_dtype})": c * tv, "log-softmax output": 4 * tv}
        if c != 4:
            forward["fp32 copy for the loss"] = 4 * tv
    if sum(forward.values()) >= sum(backward.values()):
        return forward, "forward, at the loss"
    return backward, "backward, through the log-softmax"


def autocast_copies(shape: ModelShape, setup: Setup, lora_params: int) -> dict[str, int]:
    """bf16 copies autocast makes of fp32 weights and keeps for backward."""
    c = setup.compute_bytes
    if c == 4:
        return {}
    parts = {"bf16 LoRA copies": lora_params * c}
    if setup.float_weight_bytes != c and setup.loss != "fused_linear":
        parts["bf16 lm_head copy"] = shape.vocab * shape.hidden * c
    return parts


def embedding_copies(shape: ModelShape, setup: Setup) -> dict[str, int]:
    """peft's trainable tokens: a merged copy of the embedding in forward, its dense gradient in backward."""
    if not setup.trainable_token_rows:
        return {}
    return {"merged embedding (forward) or its dense gradient (backward)":
            shape.vocab * shape.hidden * setup.float_weight_bytes}
