"""The two style control tokens: names, parsing, tokenizer ids and embedding rows.

`<STYLE_TERSE>` and `<STYLE_VERBOSE>` are single tokens placed at the start of the user turn ("<STYLE_TERSE>\\n
What is 2+2?"), as in seed 000. When the model's embedding matrix has rows beyond the tokenizer (Qwen3: 151,936
rows, ~151,669 used) the tokens take two of those spare rows; otherwise the embedding is resized, with the new
rows set deterministically so that an adapter reload repeats exactly the same resize.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from .errors import ModelError

STYLES = ("TERSE", "VERBOSE")
STYLE_TOKENS = {style: f"<STYLE_{style}>" for style in STYLES}
_ANY_STYLE_TOKEN = re.compile(r"<STYLE_([A-Za-z_]+)>[ \t]*\n?")


def normalize_style(value: Any) -> str | None:
    """'terse', 'TERSE' or '<STYLE_TERSE>' -> 'TERSE'; anything else -> None."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    match = re.fullmatch(r"<STYLE_([A-Za-z]+)>", text)
    name = (match.group(1) if match else text).upper()
    return name if name in STYLES else None


def extract_style_tokens(text: str) -> tuple[list[str], str]:
    """(style names written as tokens in `text`, `text` without them). Unknown names are returned as written."""
    found = [m.group(1).upper() for m in _ANY_STYLE_TOKEN.finditer(text)]
    return found, _ANY_STYLE_TOKEN.sub("", text)


def with_style_token(text: str, style: str) -> str:
    """The user-turn content with the style token in front, seed 000's layout."""
    return f"{STYLE_TOKENS[style]}\n{text}"


@dataclass(frozen=True)
class StyleTokens:
    """Where the style tokens live in one tokenizer + model pair."""

    terse_id: int
    verbose_id: int
    embedding_rows: int      # rows of the base model's input embedding as loaded from its directory
    required_rows: int       # highest token id after adding the style tokens, + 1
    added_to_tokenizer: bool

    @property
    def needs_resize(self) -> bool:
        return self.required_rows > self.embedding_rows

    @property
    def ids(self) -> list[int]:
        return [self.terse_id, self.verbose_id]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "uses_spare_rows": not self.needs_resize}


def add_style_tokens(tokenizer, embedding_rows: int) -> StyleTokens:
    """Add both tokens to `tokenizer` (if missing) and check each encodes as exactly one token."""
    vocab = tokenizer.get_vocab()
    missing = [t for t in STYLE_TOKENS.values() if t not in vocab]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
    ids = {}
    for style, token in STYLE_TOKENS.items():
        encoded = tokenizer(f"{token}\nHello", add_special_tokens=False)["input_ids"]
        token_id = tokenizer.convert_tokens_to_ids(token)
        if not encoded or encoded[0] != token_id or token_id == tokenizer.unk_token_id:
            raise ModelError(f"{token} does not encode as a single token with this tokenizer (got {encoded[:4]})",
                             hint="the tokenizer must keep added tokens whole; check its added_tokens settings")
        ids[style] = token_id
    required = max(max(tokenizer.get_vocab().values()), *ids.values()) + 1
    return StyleTokens(terse_id=ids["TERSE"], verbose_id=ids["VERBOSE"], embedding_rows=embedding_rows,
                       required_rows=required, added_to_tokenizer=bool(missing))


def embedding_rows_of(model_dir) -> int:
    """Rows of the input embedding declared by the model's config.json (no weights loaded)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(model_dir))
    return int(config.get_text_config().vocab_size)


def resize_for_style_tokens(model, rows: int) -> None:
    """Grow the input (and untied output) embedding to `rows`; new rows = mean of the old rows.

    transformers' default `mean_resizing` samples the new rows from a normal distribution around that mean:
    random, so a reload would not reproduce them. The mean itself is deterministic, makes the new lm_head rows
    score like an average token (never chosen over the real vocabulary), and the trained style rows replace
    the input rows anyway.
    """
    import torch

    old_rows = model.get_input_embeddings().weight.shape[0]
    if rows <= old_rows:
        return
    model.resize_token_embeddings(rows, mean_resizing=False)
    layers = {id(m): m for m in (model.get_input_embeddings(), model.get_output_embeddings()) if m is not None}
    with torch.no_grad():
        for layer in layers.values():
            weight = layer.weight
            weight[old_rows:] = weight[:old_rows].float().mean(dim=0).to(weight.dtype)
