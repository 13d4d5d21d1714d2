"""A tiny Mistral-like model and tokenizer, built in code: `MistralForCausalLM` whose vocabulary has no spare rows.

    python -m remote_payload.tiny_mistral --out DIR

It stands in for Mistral-7B-v0.3 (seed 002) where the export path differs from Qwen3's:
* the embedding has exactly as many rows as the tokenizer has tokens (Mistral-7B-v0.3: 32,768 of 32,768), so
  the style tokens get ids past the base vocabulary and training resizes the embedding (styles.py): vLLM's
  embedding LoRA cannot express that, only a merged model can;
* the architecture is `MistralForCausalLM`, which vLLM gives no embedding LoRA at all;
* `[INST] ... [/INST]` prompts with `<s>`/`</s>`, and `[INST]`/`[/INST]` as control tokens, as in v0.3.
Sizes match the tiny Qwen3 served by the tests (hidden 64, 2 layers, head_dim 32 for vLLM); the byte-level BPE
is trained on the same corpus. Weights are random (seeded).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .tiny_model import BPE_VOCAB_SIZE, DEFAULT_CORPUS, INIT_STD

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "[INST]", "[/INST]"]
# Mistral-Instruct's layout: the system text joins the first user turn; answers end with </s>.
MISTRAL_CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- set ns = namespace(system='') %}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' %}{%- set ns.system = message['content'] + '\\n\\n' %}"
    "{%- elif message['role'] == 'user' %}{{- '[INST] ' + ns.system + message['content'] + ' [/INST]' }}"
    "{%- set ns.system = '' %}"
    "{%- elif message['role'] == 'assistant' %}{{- ' ' + message['content'] + eos_token }}"
    "{%- endif %}"
    "{%- endfor %}"
)


def build_tokenizer(corpus: Path = DEFAULT_CORPUS):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=BPE_VOCAB_SIZE, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train([str(corpus)], trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                        additional_special_tokens=["[INST]", "[/INST]"], model_max_length=4096)
    tokenizer.chat_template = MISTRAL_CHAT_TEMPLATE
    return tokenizer


def build_config(tokenizer, head_dim: int = 32):
    from transformers import MistralConfig

    return MistralConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=192, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=head_dim, max_position_embeddings=1024,
        sliding_window=None, tie_word_embeddings=False, rms_norm_eps=1e-6, initializer_range=INIT_STD,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=None)


def build_tiny_mistral(out_dir: str | Path, corpus: Path = DEFAULT_CORPUS, seed: int = 0) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(corpus)
    config = build_config(tokenizer)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id,
                                               eos_token_id=tokenizer.eos_token_id, do_sample=False)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    rows = json.loads((out / "config.json").read_text())["vocab_size"]
    assert rows == len(tokenizer), "the tiny Mistral must have no spare embedding rows"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m remote_payload.tiny_mistral", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(f"tiny Mistral written to {build_tiny_mistral(args.out, seed=args.seed)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
