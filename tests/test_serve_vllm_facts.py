"""What the export code assumes about vLLM, checked against the installed vLLM itself (the serving venv): which
architectures have an embedding LoRA, and that vLLM's own adapter parser accepts the lora export and rejects
the raw training adapter, so a vLLM upgrade that changes either fails here rather than on an instance."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.conftest_serving import PAYLOAD_ENV, ROOT

pytestmark = [pytest.mark.timeout(600),
              pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:.*is deprecated and will be removed in v6:FutureWarning")]

ARCHITECTURES = """
import importlib, json, warnings
warnings.filterwarnings("ignore")
from vllm.model_executor.models import registry
found = {}
for arch in ("Qwen3ForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM", "LlamaForCausalLM",
             "MixtralForCausalLM", "Qwen3MoeForCausalLM", "Phi3ForCausalLM", "GraniteForCausalLM"):
    module, cls = registry._TEXT_GENERATION_MODELS[arch]
    c = getattr(importlib.import_module(f"vllm.model_executor.models.{module}"), cls)
    found[arch] = bool(getattr(c, "supports_lora", False)) and "embed_tokens" in (c.embedding_modules or {})
print(json.dumps(found))
"""

PARSE = """
import json, sys
from safetensors import safe_open
from vllm.lora.peft_helper import PEFTHelper
from vllm.lora.utils import parse_fine_tuned_lora_name
out = {}
for directory in sys.argv[1:]:
    config = json.load(open(f"{directory}/adapter_config.json"))
    helper = PEFTHelper.from_dict(config)
    problems = helper._validate_features()
    with safe_open(f"{directory}/adapter_model.safetensors", "pt") as f:
        for name in f.keys():
            try:
                parse_fine_tuned_lora_name(name)
            except ValueError as exc:
                problems.append(str(exc))
    out[directory] = problems
print(json.dumps(out))
"""


def serve_python(serve_venv, script: str, *args: str) -> dict:
    done = subprocess.run([str(serve_venv), "-c", script, *args], cwd=ROOT, env={**os.environ, **PAYLOAD_ENV},
                          capture_output=True, text=True, timeout=500)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_embedding_lora_table_agrees_with_the_installed_vllm(serve_venv):
    from remote_payload.export.embedding_lora import EMBEDDING_LORA_ARCHITECTURES

    found = serve_python(serve_venv, ARCHITECTURES)
    assert found == {arch: arch in EMBEDDING_LORA_ARCHITECTURES for arch in found}
    assert found["Qwen3ForCausalLM"] and not found["MistralForCausalLM"] and not found["Qwen2ForCausalLM"]


def test_vllms_own_parser_accepts_the_lora_export_and_rejects_the_training_adapter(serve_venv, exports,
                                                                                    serving_run):
    export, raw = str(exports.get("qwen-lora")), str(serving_run.adapter)
    problems = serve_python(serve_venv, PARSE, export, raw)
    assert problems[export] == []
    assert any("trainable_tokens_delta is unsupported LoRA weight" in p for p in problems[raw])
