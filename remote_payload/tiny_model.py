"""A tiny Qwen3 model and tokenizer, built entirely in code (no downloads).

    python -m remote_payload.tiny_model --out DIR

It stands in for Qwen3-14B in the tests, the demo job and the lifecycle tests, and mirrors the parts of the real
model that the payload depends on:

* a byte-level BPE tokenizer (trained here with `tokenizers` on `data/tiny_corpus.txt`) with Qwen's pre-tokenizer
  and its special tokens `<|endoftext|>` (pad), `<|im_start|>`, `<|im_end|>` (eos), `<think>`, `</think>`;
* the Qwen3 chat template, including the non-thinking form (`enable_thinking=False` renders an empty
  `<think>\\n\\n</think>\\n\\n` block after `<|im_start|>assistant\\n`);
* an embedding matrix with more rows than the tokenizer uses (Qwen3: 151,936 rows, ~151,669 used), so the
  style tokens take spare rows instead of a resize, exactly as on the real model. The spare rows are all equal
  (the mean of the used rows), like rows no training ever touched: TERSE and VERBOSE prompts only differ once
  the two style rows are trained;
* untied input/output embeddings, as in Qwen3-14B.

The weights are random (seeded): the model learns nothing but what the tiny recipe teaches it. `head_gain`
scales the output layer: at 1 (the verbosity tests' model) a final hidden state of norm sqrt(64) against output
rows of norm ~0.5 caps every logit near 4, so no token of the 1,000 can get more than ~5% probability -- fine for
learning where an answer ends, but a trained model's output layer is far more decisive, and LoRA (which cannot
touch the output layer) cannot get a yes/no decision past that cap. The classification tests use head_gain 8
(logits up to ~30, as a pretrained model's reach).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PACKAGE_DATA = Path(__file__).resolve().parent / "data"
DEFAULT_CORPUS = PACKAGE_DATA / "tiny_corpus.txt"

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
THINK_TOKENS = ["<think>", "</think>"]  # added, but not special: decoding keeps them, as in Qwen3
BPE_VOCAB_SIZE = 1000   # merges + byte alphabet + special tokens; the demo sentences become ~1.3 tokens/word
SPARE_ROWS = 24         # embedding rows beyond the tokenizer; rounded up to a multiple of 64 below
INIT_STD = 0.06          # ~1/sqrt(hidden): logits of a usable scale; 0.02 (the 14B default) keeps them ~flat
HEAD_DIM = 16            # hidden 64 / 4 heads; vLLM's attention needs head_dim >= 32: serving tests pass 32

# Qwen3's chat template (as shipped with the Qwen3 instruct checkpoints), without the tool-calling branches.
QWEN3_CHAT_TEMPLATE = (
    "{%- if messages[0].role == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- set ns = namespace(last_query_index=messages|length - 1) %}"
    "{%- for message in messages[::-1] %}"
    "{%- set index = (messages|length - 1) - loop.index0 %}"
    "{%- if message.role == 'user' and ns.last_query_index == messages|length - 1 %}"
    "{%- set ns.last_query_index = index %}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- for message in messages %}"
    "{%- set content = message.content if message.content is string else '' %}"
    "{%- if message.role == 'user' or (message.role == 'system' and not loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>\\n' }}"
    "{%- elif message.role == 'assistant' %}"
    "{%- set reasoning_content = '' %}"
    "{%- if message.reasoning_content is string %}"
    "{%- set reasoning_content = message.reasoning_content %}"
    "{%- elif '</think>' in content %}"
    "{%- set reasoning_content = content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}"
    "{%- set content = content.split('</think>')[-1].lstrip('\\n') %}"
    "{%- endif %}"
    "{%- if loop.index0 > ns.last_query_index and (loop.last or reasoning_content) %}"
    "{{- '<|im_start|>assistant\\n<think>\\n' + reasoning_content.strip('\\n') + '\\n</think>\\n\\n'"
    " + content.lstrip('\\n') }}"
    "{%- else %}"
    "{{- '<|im_start|>assistant\\n' + content }}"
    "{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif %}"
    "{%- endif %}"
)


def train_bpe(corpus: Path, vocab_size: int = BPE_VOCAB_SIZE):
    """Byte-level BPE with Qwen2/3's normalizer and pre-tokenizer, trained on `corpus` (one text per line)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train([str(corpus)], trainer)
    return tok


def build_tokenizer(corpus: Path = DEFAULT_CORPUS):
    """A `Qwen2Tokenizer` (the class Qwen3 checkpoints use) over a freshly trained tiny BPE."""
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    bpe = json.loads(train_bpe(corpus).to_str())["model"]
    tokenizer = Qwen2Tokenizer(vocab=bpe["vocab"], merges=[tuple(m) for m in bpe["merges"]],
                               eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None,
                               model_max_length=4096)
    tokenizer.add_tokens([AddedToken(t, special=True) for t in SPECIAL_TOKENS], special_tokens=True)
    tokenizer.add_tokens([AddedToken(t, special=False) for t in THINK_TOKENS])
    tokenizer.chat_template = QWEN3_CHAT_TEMPLATE
    return tokenizer


def build_config(tokenizer, spare_rows: int = SPARE_ROWS, head_dim: int = HEAD_DIM):
    """A 2-layer Qwen3 (~0.3M parameters) whose embedding has spare rows beyond the tokenizer
    (`spare_rows=0`: exactly as many rows as tokens, like Mistral-7B-v0.3, so style tokens need a resize).
    Qwen3 sets head_dim apart from hidden_size / heads: `head_dim=32` widens q/k/v/o for vLLM (>= 32)."""
    from transformers import Qwen3Config

    used = max(tokenizer.get_vocab().values()) + 1
    rows = -(-(used + spare_rows) // 64) * 64 if spare_rows else used
    return Qwen3Config(
        vocab_size=rows, hidden_size=64, intermediate_size=192, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=head_dim, max_position_embeddings=1024,
        tie_word_embeddings=False, rms_norm_eps=1e-6, initializer_range=INIT_STD,
        bos_token_id=None, eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
    )


def build_tiny_model(out_dir: str | Path, corpus: Path = DEFAULT_CORPUS, seed: int = 0,
                     spare_rows: int = SPARE_ROWS, head_gain: float = 1.0, head_dim: int = HEAD_DIM) -> Path:
    """Build the tokenizer and a randomly initialised tiny Qwen3, `save_pretrained` both into `out_dir`."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(corpus)
    config = build_config(tokenizer, spare_rows, head_dim)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    used = len(tokenizer)
    with torch.no_grad():  # spare rows alike, as never-trained rows end up: the style rows must be learned
        for weight in (model.get_input_embeddings().weight, model.get_output_embeddings().weight):
            weight[used:] = weight[:used].mean(dim=0)
        model.get_output_embeddings().weight.mul_(head_gain)
    model.generation_config = GenerationConfig(
        eos_token_id=[config.eos_token_id, tokenizer.pad_token_id], pad_token_id=tokenizer.pad_token_id,
        do_sample=False)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m remote_payload.tiny_model", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="directory to write the model and tokenizer into")
    parser.add_argument("--seed", type=int, default=0, help="weight initialisation seed (default 0)")
    parser.add_argument("--head-gain", type=float, default=1.0,
                        help="scale of the output layer (8 for the classification demo, see above)")
    parser.add_argument("--head-dim", type=int, default=HEAD_DIM,
                        help=f"attention head size (default {HEAD_DIM}; vLLM serves only >= 32)")
    args = parser.parse_args(argv)
    path = build_tiny_model(args.out, seed=args.seed, head_gain=args.head_gain, head_dim=args.head_dim)
    print(f"tiny Qwen3 written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
