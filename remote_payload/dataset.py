"""Training data: JSONL in the three formats of the user's documents, validated before any model is loaded.

One JSON object per line, any mix of:

* prompt/completion (seed 000): {"prompt": "...", "completion": "...", "style": "TERSE"}
  The style may instead be written as a token in the prompt ("<STYLE_TERSE>\\nWhat is 2+2?"). A prompt that is
  already rendered in ChatML ("<|im_start|>user\\n...<|im_end|>\\n<|im_start|>assistant\\n") or Mistral's
  "[INST] ... [/INST]" is parsed back into turns and re-rendered with the model's own template, so training and
  generation see the same prompt; end markers (<|im_end|>, </s>) are stripped from the completion.
* instruction (seed 001): {"system": "", "instruction": "...", "input": "", "output": "...", "style": "VERBOSE"}
* chat: {"messages": [{"role": "user", ...}, {"role": "assistant", ...}], "style": "TERSE"}
  Optional system turn first, then user/assistant alternating, ending with the assistant answer that is trained.

Every bad line is reported as "file:line: reason" in one DatasetError.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DatasetError
from .styles import STYLES, extract_style_tokens, normalize_style

END_MARKERS = ("<|im_end|>", "</s>", "<|endoftext|>", "<|eot_id|>")
ROLES = ("system", "user", "assistant")
FORMAT_HINT = ('expected {"prompt", "completion"}, {"instruction", "output", ...} or {"messages"} '
               '(see remote_payload/dataset.py)')


class LineProblem(Exception):
    """One bad line; collected, never shown alone."""


@dataclass(frozen=True)
class Example:
    source: str                      # "name.jsonl:12"
    style: str                       # "TERSE" | "VERBOSE"
    messages: tuple[dict, ...]       # turns before the trained answer; no style token in them
    completion: str                  # the assistant answer that is trained
    fmt: str                         # "prompt_completion" | "instruction" | "chat"
    prerendered: bool = False


@dataclass
class Dataset:
    path: Path
    sha256: str
    examples: list[Example]
    lines: int = 0
    counts: dict[str, Any] = field(default_factory=dict)


def _text(record: dict, key: str, *, required: bool) -> str:
    value = record.get(key)
    if value is None:
        if required:
            raise LineProblem(f'missing field "{key}"')
        return ""
    if not isinstance(value, str):
        raise LineProblem(f'field "{key}" must be a string, got {type(value).__name__}')
    return value


def _strip_end_markers(text: str) -> str:
    text = text.strip()
    changed = True
    while changed:
        changed = False
        for marker in END_MARKERS:
            if text.endswith(marker):
                text, changed = text[: -len(marker)].rstrip(), True
    return text


def _parse_chatml(prompt: str) -> list[dict]:
    turns = re.findall(r"<\|im_start\|>(\w+)\n(.*?)(?:<\|im_end\|>|\Z)", prompt, flags=re.DOTALL)
    messages = [{"role": role, "content": content.strip("\n")} for role, content in turns]
    if messages and messages[-1]["role"] == "assistant" and not re.sub(
            r"<think>\s*</think>", "", messages[-1]["content"]).strip():
        messages.pop()  # the open generation prompt "<|im_start|>assistant\n" (+ empty think block)
    return messages


def _parse_inst(prompt: str) -> list[dict]:
    messages = []
    for chunk in prompt.replace("<s>", "").split("[INST]")[1:]:
        user, _, answer = chunk.partition("[/INST]")
        messages.append({"role": "user", "content": user.strip()})
        answer = _strip_end_markers(answer)
        if answer:
            messages.append({"role": "assistant", "content": answer})
    return messages


def _prompt_messages(prompt: str) -> tuple[list[dict], bool]:
    """Turns of a prompt/completion prompt; True when it was pre-rendered chat markup."""
    if "<|im_start|>" in prompt:
        return _parse_chatml(prompt), True
    if "[INST]" in prompt:
        return _parse_inst(prompt), True
    return [{"role": "user", "content": prompt}], False


def _check_turns(messages: list[dict]) -> None:
    body = messages[1:] if messages and messages[0]["role"] == "system" else messages
    expected = ["user", "assistant"] * (len(body) // 2 + 1)
    roles = [m["role"] for m in body]
    if not roles or roles != expected[: len(roles)]:
        raise LineProblem("turns must be: optional system, then user/assistant alternating starting with user "
                          f"(got {' -> '.join(m['role'] for m in messages) or 'no turns'})")


def _resolve_style(field_value: Any, messages: list[dict], completion: str) -> tuple[str, list[dict]]:
    """The example's style (field and/or token in the last user turn) and the turns without style tokens."""
    in_answer, _ = extract_style_tokens(completion)
    if in_answer:
        raise LineProblem(f"style token <STYLE_{in_answer[0]}> inside the answer; it belongs in the user turn")
    cleaned, found = [], []
    for message in messages:
        tokens, content = extract_style_tokens(message["content"])
        found += tokens
        cleaned.append({"role": message["role"], "content": content.strip("\n") if tokens else message["content"]})
    unknown = sorted({t for t in found if t not in STYLES})
    if unknown:
        raise LineProblem(f"unknown style token <STYLE_{unknown[0]}> (expected <STYLE_TERSE> or <STYLE_VERBOSE>)")
    style = None
    if field_value is not None:
        style = normalize_style(field_value)
        if style is None:
            raise LineProblem(f"unknown style {field_value!r} (expected TERSE or VERBOSE)")
    tokens = sorted(set(found))
    if len(tokens) > 1:
        raise LineProblem("both <STYLE_TERSE> and <STYLE_VERBOSE> appear in the prompt")
    if tokens and style and tokens[0] != style:
        raise LineProblem(f'"style" says {style} but the prompt carries <STYLE_{tokens[0]}>')
    style = style or (tokens[0] if tokens else None)
    if style is None:
        raise LineProblem('no style: add "style": "TERSE" or "VERBOSE", or start the user turn with '
                          "<STYLE_TERSE> / <STYLE_VERBOSE>")
    return style, cleaned


def _from_prompt_completion(record: dict) -> tuple[list[dict], str, bool]:
    prompt = _text(record, "prompt", required=True)
    completion = _strip_end_markers(_text(record, "completion", required=True))
    messages, prerendered = _prompt_messages(prompt)
    if not messages or not any(m["content"].strip() for m in messages if m["role"] == "user"):
        raise LineProblem('empty prompt: "prompt" has no user text')
    return messages, completion, prerendered


def _from_instruction(record: dict) -> tuple[list[dict], str, bool]:
    system = _text(record, "system", required=False).strip()
    instruction = _text(record, "instruction", required=True).strip()
    extra = _text(record, "input", required=False).strip()
    output = _text(record, "output", required=True)
    if not instruction and not extra:
        raise LineProblem('empty prompt: "instruction" and "input" are both empty')
    user = f"{instruction}\n\n{extra}" if instruction and extra else instruction or extra
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    return messages, output.strip(), False


def _from_chat(record: dict) -> tuple[list[dict], str, bool]:
    turns = record.get("messages")
    if not isinstance(turns, list) or not turns:
        raise LineProblem('field "messages" must be a non-empty list of {"role", "content"} objects')
    messages = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or turn.get("role") not in ROLES or not isinstance(turn.get("content"), str):
            raise LineProblem(f"messages[{i}] must be {{\"role\": system|user|assistant, \"content\": string}}")
        messages.append({"role": turn["role"], "content": turn["content"]})
    _check_turns(messages)
    if messages[-1]["role"] != "assistant":
        raise LineProblem("the last message must be the assistant answer to train on")
    return messages[:-1], _strip_end_markers(messages[-1]["content"]), False


def parse_record(record: Any, source: str) -> Example:
    """One decoded JSON line -> Example, or LineProblem naming what is wrong."""
    if not isinstance(record, dict):
        raise LineProblem(f"expected a JSON object, got {type(record).__name__}")
    if "messages" in record:
        fmt, (messages, completion, prerendered) = "chat", _from_chat(record)
    elif "prompt" in record or "completion" in record:
        fmt, (messages, completion, prerendered) = "prompt_completion", _from_prompt_completion(record)
    elif "instruction" in record or "output" in record:
        fmt, (messages, completion, prerendered) = "instruction", _from_instruction(record)
    else:
        raise LineProblem(f"unrecognised record with keys {sorted(record)}: {FORMAT_HINT}")
    if not completion.strip():
        raise LineProblem("empty completion: the answer to train on is empty")
    if fmt != "chat":
        _check_turns(messages + [{"role": "assistant", "content": completion}])
    style, messages = _resolve_style(record.get("style"), messages, completion)
    return Example(source=source, style=style, messages=tuple(messages), completion=completion, fmt=fmt,
                   prerendered=prerendered)


def _decode_line(raw: bytes, first: bool = False) -> Any:
    try:
        text = raw.decode("utf-8-sig" if first else "utf-8")  # tolerate a byte-order mark at the file start
    except UnicodeDecodeError as exc:
        raise LineProblem(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise LineProblem(f"bad JSON: {exc.msg} (column {exc.colno})") from None


def load_dataset(path: str | Path) -> Dataset:
    """Read and validate every line; raise DatasetError listing all bad lines, or return the examples."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read dataset {path}: {exc.strerror}") from None
    examples, problems, lines = [], [], data.splitlines()
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        source = f"{path.name}:{number}"
        try:
            examples.append(parse_record(_decode_line(raw, first=number == 1), source))
        except LineProblem as exc:
            problems.append(f"{source}: {exc}")
    if problems:
        raise DatasetError(f"{path}: {len(problems)} bad line(s) of {len(lines)}; nothing was trained", problems,
                           hint="fix or remove these lines; formats are described in remote_payload/dataset.py")
    if not examples:
        raise DatasetError(f"{path}: no examples (the file is empty)")
    return Dataset(path=path, sha256=hashlib.sha256(data).hexdigest(), examples=examples, lines=len(lines),
                   counts=count_examples(examples))


def count_examples(examples: list[Example]) -> dict[str, Any]:
    return {
        "examples": len(examples),
        "by_style": dict(sorted(Counter(e.style for e in examples).items())),
        "by_format": dict(sorted(Counter(e.fmt for e in examples).items())),
        "prerendered_prompts": sum(e.prerendered for e in examples),
    }
