"""Training and evaluation data: JSONL validated line by line, before any model is loaded.

One JSON object per line, in any mix of the formats of `formats.py`. What else a line needs depends on the
recipe's task (`DataSpec`):

* verbosity: a style, as a "style" field ("TERSE"/"VERBOSE") or as a token in the user turn ("<STYLE_TERSE>\\n
  What is 2+2?"); the token is taken out of the text and placed back by the prompt renderer;
* classification: the answer ("output", "completion", the last assistant turn, or a MovieLens "label" of 1/0)
  must be one of the recipe's two label words (case and a trailing full stop do not matter);
* generation: any non-empty answer; style tokens are refused (they only mean something to verbosity recipes).

An example without a system turn gets the recipe's `system_prompt` (when it has one). Every bad line is reported
as "file:line: reason" in one DatasetError. Stdlib only: the controller runs the same checks.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DatasetError
from .formats import LineProblem, Parsed, parse_format
from .styles import STYLES, extract_style_tokens, normalize_style


@dataclass(frozen=True)
class DataSpec:
    """What the recipe's task requires of every example."""

    task: str = "verbosity"
    positive: str = "Yes"
    negative: str = "No"
    system_prompt: str = ""

    @classmethod
    def from_recipe(cls, recipe) -> "DataSpec":
        words = (recipe.evaluation.positive, recipe.evaluation.negative) if recipe.task == "classification" \
            else ("Yes", "No")
        return cls(recipe.task, *words, system_prompt=recipe.system_prompt)


@dataclass(frozen=True)
class Example:
    source: str                      # "name.jsonl:12"
    style: str | None                # verbosity: "TERSE" | "VERBOSE"; other tasks: None
    messages: tuple[dict, ...]       # turns before the trained answer; no style token in them
    completion: str                  # the assistant answer that is trained (classification: the label word)
    fmt: str                         # "prompt_completion" | "instruction" | "chat" | "movielens"
    prerendered: bool = False
    label: str | None = None         # classification: the label word, as the recipe spells it
    meta: dict[str, Any] = field(default_factory=dict, compare=False)   # movielens: user_id, candidate_title


@dataclass
class Dataset:
    path: Path
    sha256: str
    examples: list[Example]
    lines: int = 0
    counts: dict[str, Any] = field(default_factory=dict)


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


def label_word(value: Any, spec: DataSpec) -> str:
    """The recipe's label word for an answer ("yes", "Yes.", 1, True -> "Yes"), or LineProblem."""
    if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
        return spec.positive if value else spec.negative
    if isinstance(value, str):
        text = value.strip().rstrip(".").strip().lower()
        for word in (spec.positive, spec.negative):
            if text == word.lower():
                return word
        if text in ("1", "0"):
            return spec.positive if text == "1" else spec.negative
    raise LineProblem(f"answer {value!r} is not a label word (expected {spec.positive!r} or {spec.negative!r}"
                      ", or 1/0 in a \"label\" field)")


def _refuse_style_tokens(parsed: Parsed, task: str) -> None:
    for text in [m["content"] for m in parsed.messages] + [parsed.completion]:
        tokens, _ = extract_style_tokens(text)
        if tokens:
            raise LineProblem(f"style token <STYLE_{tokens[0]}> in a {task} example: style tokens are only for "
                              "verbosity recipes")


def _with_system(messages: list[dict], system_prompt: str) -> list[dict]:
    if system_prompt and not (messages and messages[0]["role"] == "system"):
        return [{"role": "system", "content": system_prompt}, *messages]
    return messages


def parse_record(record: Any, source: str, spec: DataSpec = DataSpec()) -> Example:
    """One decoded JSON line -> Example for `spec`'s task, or LineProblem naming what is wrong."""
    parsed = parse_format(record)
    style, label, messages, completion = None, None, parsed.messages, parsed.completion
    if spec.task == "verbosity":
        if parsed.fmt == "movielens":
            raise LineProblem("a MovieLens test record (history_titles/candidate_title) cannot train a verbosity "
                              "recipe")
        style, messages = _resolve_style(record.get("style"), messages, completion)
    else:
        _refuse_style_tokens(parsed, spec.task)
    if spec.task == "classification":
        label = label_word(parsed.label if parsed.fmt == "movielens" else completion, spec)
        completion = label
    elif parsed.fmt == "movielens":
        raise LineProblem(f"a MovieLens test record has no answer text for a {spec.task} recipe")
    return Example(source=source, style=style, messages=tuple(_with_system(messages, spec.system_prompt)),
                   completion=completion, fmt=parsed.fmt, prerendered=parsed.prerendered, label=label,
                   meta=parsed.meta)


def _decode_line(raw: bytes, first: bool = False) -> Any:
    try:
        text = raw.decode("utf-8-sig" if first else "utf-8")  # tolerate a byte-order mark at the file start
    except UnicodeDecodeError as exc:
        raise LineProblem(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise LineProblem(f"bad JSON: {exc.msg} (column {exc.colno})") from None


def read_records(path: Path) -> tuple[bytes, list[bytes]]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read dataset {path}: {exc.strerror}") from None
    return data, data.splitlines()


def raw_record(path: str | Path, line: int) -> Any:
    """The decoded JSON object on 1-based `line` of a dataset file (for showing where an example came from)."""
    return _decode_line(read_records(Path(path))[1][line - 1], first=line == 1)


def load_dataset(path: str | Path, spec: DataSpec = DataSpec()) -> Dataset:
    """Read and validate every line; raise DatasetError listing all bad lines, or return the examples."""
    path = Path(path)
    data, lines = read_records(path)
    examples, problems = [], []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        source = f"{path.name}:{number}"
        try:
            examples.append(parse_record(_decode_line(raw, first=number == 1), source, spec))
        except LineProblem as exc:
            problems.append(f"{source}: {exc}")
    if problems:
        raise DatasetError(f"{path}: {len(problems)} bad line(s) of {len(lines)}; nothing was trained "
                           f"(checked as {spec.task} data)", problems,
                           hint="fix or remove these lines; formats are described in remote_payload/formats.py")
    if not examples:
        raise DatasetError(f"{path}: no examples (the file is empty)")
    return Dataset(path=path, sha256=hashlib.sha256(data).hexdigest(), examples=examples, lines=len(lines),
                   counts=count_examples(examples))


def count_examples(examples: list[Example]) -> dict[str, Any]:
    counts = {"examples": len(examples), "by_format": dict(sorted(Counter(e.fmt for e in examples).items())),
              "prerendered_prompts": sum(e.prerendered for e in examples)}
    if any(e.style for e in examples):
        counts["by_style"] = dict(sorted(Counter(e.style for e in examples).items()))
    if any(e.label for e in examples):
        counts["by_label"] = dict(sorted(Counter(e.label for e in examples).items()))
    return counts
