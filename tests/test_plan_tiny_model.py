"""The planner's parameter and optimizer bytes against what torch allocates for the payload's tiny model on CPU.

The tiny Qwen3 (remote_payload.tiny_model) is loaded in 4-bit by the payload's own functions and LoRA is attached
as the tiny-verbosity recipe does (`load_base_model` + `attach_lora`: nf4 with double quantization, peft's
prepare_model_for_kbit_training, LoRA r=16 on all linear layers, the two style rows through
trainable_token_indices). Every tensor is then counted by its storage: the packed 4-bit weights and each
layer's quant_state tensors, the floating-point weights, the adapters, the gradients after one backward and the
AdamW state after one step. The prediction must match to the byte.
"""

from __future__ import annotations

import json

import pytest

from orchestrator.plan import setup_from_recipe, shape_from_config
from orchestrator.plan import states


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    import torch

    from remote_payload.modeling import attach_lora, load_base_model, prepare_tokenizer
    from remote_payload.recipes import load_recipe

    torch.manual_seed(0)
    recipe = load_recipe("tiny-verbosity")
    _, style = prepare_tokenizer(tiny_model_dir)
    model = attach_lora(load_base_model(tiny_model_dir, recipe), recipe, style)
    shape = shape_from_config(json.loads((tiny_model_dir / "config.json").read_text()))
    return model, setup_from_recipe(recipe), shape


def storage_bytes(model) -> dict[str, int]:
    """Bytes of every distinct storage the model holds, by what the planner calls it."""
    import bitsandbytes as bnb

    seen, sizes = set(), {"quantized": 0, "float": 0, "adapters": 0}

    def add(kind: str, tensor) -> None:
        storage = tensor.untyped_storage()
        key = (storage.data_ptr(), storage.nbytes())
        if key not in seen:
            seen.add(key)
            sizes[kind] += storage.nbytes()

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            state = module.weight.quant_state
            for tensor in (module.weight, state.absmax, state.code, state.offset, state.state2.absmax,
                           state.state2.code):
                add("quantized", tensor)
    for name, param in model.named_parameters():
        if param.__class__.__name__ == "Params4bit":
            continue
        add("adapters" if ("lora_" in name or "trainable_tokens" in name) else "float", param)
    for name, buffer in model.named_buffers():
        if "trainable_tokens" in name:
            add("adapters", buffer)
    return sizes


def test_weights_and_adapters_the_planner_predicts_are_the_bytes_torch_holds(loaded):
    model, setup, shape = loaded
    held = storage_bytes(model)
    assert held["quantized"] == sum(states.quantized_bytes(shape, setup).values())
    assert held["float"] == sum(states.float_weight_bytes(shape, setup).values())
    assert held["adapters"] == sum(states.adapter_bytes(shape, setup).values())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == states.trainable_params(shape, setup)


def test_gradients_and_adamw_state_after_one_step_are_the_bytes_the_planner_predicts(loaded):
    import torch

    model, setup, shape = loaded
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3)        # the recipe's adamw_torch
    ids = torch.randint(0, 900, (2, 16), generator=torch.Generator().manual_seed(0))
    model(input_ids=ids, labels=ids).loss.backward()
    grads = sum(p.grad.numel() * p.grad.element_size() for p in params)
    assert grads == states.gradient_bytes(shape, setup)
    optimizer.step()
    state = sum(t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values()
                if torch.is_tensor(t))
    assert state == sum(states.optimizer_bytes(shape, setup).values())
    assert len(optimizer.state) == len(states.trainable_tensors(shape, setup))
