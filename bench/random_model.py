"""A model of a real architecture and size with random weights, quantized to nf4 while it is built, on the device.

No hub download exists on these machines, and Qwen3-14B in bf16 is 29.5 GB, so it is never materialised whole.
The model is built on the meta device from its config.json; transformers' own bitsandbytes integration swaps every
linear layer but lm_head for a `Linear4bit` (`replace_with_bnb_linear` with the recipe's `BitsAndBytesConfig`, as
`from_pretrained` does); then each weight is drawn in the compute dtype on the device, one matrix at a time, and
quantized there by `bnb.nn.Params4bit(...).to(device)` -- the call transformers' `Bnb4bitQuantize` makes while
loading a checkpoint. Host memory stays small; device memory peaks at the 4-bit model plus one bf16 matrix.
What the recipes' `from_pretrained` also does is set here: `is_loaded_in_4bit`, the quantizer, the config.
"""

from __future__ import annotations

import itertools


def build_model(config: dict, recipe, device: str, seed: int = 0):
    """The 4-bit model of `config` (a config.json dict) on `device`, as `load_base_model` would return it."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.integrations.bitsandbytes import replace_with_bnb_linear
    from transformers.quantizers.auto import AutoHfQuantizer

    from remote_payload.attention import _flash_attention_problem
    from remote_payload.modeling import quantization_config, torch_dtype

    dtype = torch_dtype(recipe.compute_dtype)
    cfg = AutoConfig.for_model(**config)
    attention = recipe.attn_implementation     # "auto" as the payload resolves it (remote_payload/attention.py)
    if attention == "auto":
        attention = "sdpa" if _flash_attention_problem(recipe) else "flash_attention_2"
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype, attn_implementation=attention)
    bnb_config = quantization_config(recipe)
    model = replace_with_bnb_linear(model, modules_to_not_convert=["lm_head"], quantization_config=bnb_config)
    _materialize(model, torch.device(device), seed, std=getattr(cfg, "initializer_range", 0.02), dtype=dtype)
    if getattr(cfg, "tie_word_embeddings", False):
        model.tie_weights()
    model.is_loaded_in_4bit = True
    model.config.quantization_config = bnb_config
    model.hf_quantizer = AutoHfQuantizer.from_config(bnb_config)
    model.config.use_cache = False
    return model


def _materialize(model, device, seed: int, std: float, dtype) -> None:
    """Replace every meta parameter: 4-bit weights drawn and quantized, norms at 1, biases 0, the rest normal."""
    import bitsandbytes as bnb
    import torch

    generator = torch.Generator(device=device).manual_seed(seed)
    for module in model.modules():
        for name, param in list(module.named_parameters(recurse=False)):
            if isinstance(param, bnb.nn.Params4bit):
                value = torch.empty(module.out_features, module.in_features, dtype=dtype, device=device)
                value.normal_(0.0, std, generator=generator)
                new = bnb.nn.Params4bit(value, requires_grad=False, **param.__dict__).to(device)
                del value
            else:
                value = torch.empty(param.shape, dtype=param.dtype, device=device)
                if "norm" in type(module).__name__.lower():
                    value.fill_(1.0)
                elif name == "bias":
                    value.zero_()
                else:
                    value.normal_(0.0, std, generator=generator)
                new = torch.nn.Parameter(value, requires_grad=param.requires_grad)
            setattr(module, name, new)
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if type(child).__name__.endswith("RotaryEmbedding"):     # its inv_freq buffers are computed at init
                setattr(module, child_name, type(child)(config=model.config).to(device))
    left = [n for n, t in itertools.chain(model.named_parameters(), model.named_buffers()) if t.device.type == "meta"]
    if left:
        raise RuntimeError(f"bench: still on the meta device after building: {', '.join(left[:5])}")
