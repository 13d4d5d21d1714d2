"""The JSONL record formats: each decoded line -> the turns before the answer, the answer, and the format.

* prompt/completion (seed 000): {"prompt": "...", "completion": "..."}; a prompt already rendered in ChatML
  ("<|im_start|>user\\n...<|im_end|>\\n<|im_start|>assistant\\n") or Mistral's "[INST] ... [/INST]" is parsed back
  into turns, and end markers (<|im_end|>, </s>) are stripped from the completion.
* instruction (seeds 001, 003): {"system": "", "instruction": "...", "input": "", "output": "..."}
* chat: {"messages": [{"role": "user", ...}, {"role": "assistant", ...}]}: optional system turn first, then
  user/assistant alternating, ending with the assistant answer that is trained.
* movielens (seed 003's test records): {"history_titles": [...], "candidate_title": "...", "label": 1,
  "user_id": 42}, rendered as `movielens.py` lays them out; the answer is the label.

What a task needs beyond this (a style, a label word) is checked by `dataset.py`. Stdlib only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .movielens import INSTRUCTION, render_input, user_turn

END_MARKERS = ("<|im_end|>", "</s>", "<|endoftext|>", "<|eot_id|>")
ROLES = ("system", "user", "assistant")
FORMAT_HINT = ('expected {"prompt", "completion"}, {"instruction", "output", ...}, {"messages"} or '
               '{"history_titles", "candidate_title", "label"} (see remote_payload/formats.py)')


class LineProblem(Exception):
    """One bad line; collected, never shown alone."""


@dataclass
class Parsed:
    messages: list[dict]
    completion: str
    fmt: str
    prerendered: bool = False
    label: Any = None                         # movielens: the raw "label" value (the answer is derived from it)
    meta: dict[str, Any] = field(default_factory=dict)


def text_field(record: dict, key: str, *, required: bool) -> str:
    value = record.get(key)
    if value is None:
        if required:
            raise LineProblem(f'missing field "{key}"')
        return ""
    if not isinstance(value, str):
        raise LineProblem(f'field "{key}" must be a string, got {type(value).__name__}')
    return value


def strip_end_markers(text: str) -> str:
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
        answer = strip_end_markers(answer)
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


def check_turns(messages: list[dict]) -> None:
    body = messages[1:] if messages and messages[0]["role"] == "system" else messages
    expected = ["user", "assistant"] * (len(body) // 2 + 1)
    roles = [m["role"] for m in body]
    if not roles or roles != expected[: len(roles)]:
        raise LineProblem("turns must be: optional system, then user/assistant alternating starting with user "
                          f"(got {' -> '.join(m['role'] for m in messages) or 'no turns'})")


def _from_prompt_completion(record: dict) -> Parsed:
    prompt = text_field(record, "prompt", required=True)
    completion = strip_end_markers(text_field(record, "completion", required=True))
    messages, prerendered = _prompt_messages(prompt)
    if not messages or not any(m["content"].strip() for m in messages if m["role"] == "user"):
        raise LineProblem('empty prompt: "prompt" has no user text')
    return Parsed(messages, completion, "prompt_completion", prerendered)


def _from_instruction(record: dict) -> Parsed:
    system = text_field(record, "system", required=False).strip()
    instruction = text_field(record, "instruction", required=True)
    extra = text_field(record, "input", required=False)
    output = text_field(record, "output", required=True)
    user = user_turn(instruction, extra)
    if not user:
        raise LineProblem('empty prompt: "instruction" and "input" are both empty')
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    return Parsed(messages, output.strip(), "instruction")


def _from_chat(record: dict) -> Parsed:
    turns = record.get("messages")
    if not isinstance(turns, list) or not turns:
        raise LineProblem('field "messages" must be a non-empty list of {"role", "content"} objects')
    messages = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or turn.get("role") not in ROLES or not isinstance(turn.get("content"), str):
            raise LineProblem(f"messages[{i}] must be {{\"role\": system|user|assistant, \"content\": string}}")
        messages.append({"role": turn["role"], "content": turn["content"]})
    check_turns(messages)
    if messages[-1]["role"] != "assistant":
        raise LineProblem("the last message must be the assistant answer to train on")
    return Parsed(messages[:-1], strip_end_markers(messages[-1]["content"]), "chat")


def _from_movielens(record: dict) -> Parsed:
    history = record.get("history_titles")
    if not isinstance(history, list) or not history or not all(isinstance(t, str) and t.strip() for t in history):
        raise LineProblem('field "history_titles" must be a non-empty list of movie titles (strings)')
    candidate = text_field(record, "candidate_title", required=True).strip()
    if not candidate:
        raise LineProblem('field "candidate_title" is empty')
    if "label" not in record:
        raise LineProblem('missing field "label" (1/0, true/false or the label word)')
    user_id = record.get("user_id")
    if user_id is not None and (isinstance(user_id, bool) or not isinstance(user_id, (int, str))):
        raise LineProblem(f'field "user_id" must be a number or a string, got {type(user_id).__name__}')
    messages = [{"role": "user", "content": user_turn(INSTRUCTION, render_input(history, candidate))}]
    meta = {"user_id": user_id, "candidate_title": candidate, "history_titles": list(history)}
    return Parsed(messages, "", "movielens", label=record["label"], meta=meta)


def parse_format(record: Any) -> Parsed:
    """The record's turns and answer, by its keys; LineProblem naming what is wrong."""
    if not isinstance(record, dict):
        raise LineProblem(f"expected a JSON object, got {type(record).__name__}")
    if "messages" in record:
        parsed = _from_chat(record)
    elif "prompt" in record or "completion" in record:
        parsed = _from_prompt_completion(record)
    elif "instruction" in record or "output" in record:
        parsed = _from_instruction(record)
    elif "history_titles" in record or "candidate_title" in record:
        return _from_movielens(record)
    else:
        raise LineProblem(f"unrecognised record with keys {sorted(record)}: {FORMAT_HINT}")
    if not parsed.completion.strip():
        raise LineProblem("empty completion: the answer to train on is empty")
    if parsed.fmt != "chat":
        check_turns(parsed.messages + [{"role": "assistant", "content": parsed.completion}])
    return parsed
