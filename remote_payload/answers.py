"""The one way a classification answer is read: used by training-time evaluation, `evaluate`, and any client of
a served model (stdlib only, so a client can import it without torch).

Seed 003 showed accuracy/F1 of 0.0 during training for days because its metric decoded the whole sequence
("system\\n...user\\n...assistant\\n<think>\\n\\n</think>\\n\\nNo") and looked for "yes"/"no" at its start, while
inference decoded only the answer. Here the callers decode only the generated tokens, and this function reads
them the way seed 003's fixed `_extract_answer` does:

1. if the text still carries the chat roles, keep what follows the last "assistant" header;
2. remove `<think>...</think>` blocks (and an unclosed `<think>` with everything after it: an answer cut off
   while still thinking has no answer);
3. the first whole word that is a label word, case-insensitive ("No, they would not" -> No);
4. seed 003's fallback: exactly one of the two words appears inside the text ("Yesss" -> Yes);
5. otherwise None: unparseable, counted as wrong.
"""

from __future__ import annotations

import re

_THINK = re.compile(r"<think>.*?</think>", flags=re.DOTALL)
_OPEN_THINK = re.compile(r"<think>.*\Z", flags=re.DOTALL)
_ASSISTANT_HEADER = re.compile(r"(?:<\|im_start\|>)?assistant\s*\n")


def answer_text(text: str) -> str:
    """The answer part of a generation: after the last assistant header, without thinking blocks."""
    headers = list(_ASSISTANT_HEADER.finditer(text))
    if headers:
        text = text[headers[-1].end():]
    return _OPEN_THINK.sub("", _THINK.sub("", text)).strip()


def extract_answer(text: str, positive: str = "Yes", negative: str = "No") -> str | None:
    """`positive`, `negative` (as spelled by the caller) or None when the text gives neither."""
    cleaned = answer_text(text).lower()
    words = {positive.lower(): positive, negative.lower(): negative}
    pattern = r"(?<![\w])(" + "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)) + r")(?![\w])"
    first = re.search(pattern, cleaned)
    if first:
        return words[first.group(1)]
    inside = [w for w in words if w in cleaned]
    return words[inside[0]] if len(inside) == 1 else None
