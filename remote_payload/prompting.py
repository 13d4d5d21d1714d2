"""The one way a prompt is rendered: the tokenizer's own chat template (verbosity: style token in the last user
turn; other tasks: no style, `style=None`).

Training (features.py), evaluation (evaluate.py) and any inference use `render_prompt` / `encode_prompt`, so the
token ids a model is trained to continue are exactly the ids it is given at generation time. For Qwen3 the
recipe passes `enable_thinking=False`, which renders the non-thinking form (an empty `<think>\\n\\n</think>\\n\\n`
after `<|im_start|>assistant\\n`); Mistral's template renders `<s>[INST] ... [/INST]`.
"""

from __future__ import annotations

from typing import Any

from .errors import TemplateError
from .styles import with_style_token


def styled_messages(messages: list[dict] | tuple[dict, ...], style: str | None) -> list[dict]:
    """A copy of `messages` with the style token at the start of the last user turn (unchanged for None)."""
    styled = [dict(m) for m in messages]
    if style is None:
        return styled
    for message in reversed(styled):
        if message["role"] == "user":
            message["content"] = with_style_token(message["content"], style)
            return styled
    raise TemplateError("cannot place a style token: the conversation has no user turn")


def _apply(tokenizer, messages: list[dict], template_kwargs: dict[str, Any], generation_prompt: bool) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise TemplateError("the tokenizer has no chat template",
                            hint="use an instruct/chat checkpoint whose tokenizer_config.json carries one")
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt,
                                         **template_kwargs)


def render_prompt(tokenizer, messages, style: str | None, template_kwargs: dict[str, Any] | None = None) -> str:
    """The prompt string, ending where the assistant's answer starts."""
    return _apply(tokenizer, styled_messages(messages, style), dict(template_kwargs or {}), True)


def encode_prompt(tokenizer, messages, style: str | None, template_kwargs: dict[str, Any] | None = None) -> list[int]:
    """Token ids of `render_prompt` (the template already contains any BOS token, so none is added)."""
    return tokenizer(render_prompt(tokenizer, messages, style, template_kwargs), add_special_tokens=False)[
        "input_ids"]


def stop_token_ids(tokenizer, generation_config=None) -> list[int]:
    """Token ids that end an answer: the tokenizer's eos plus the model's generation_config eos ids."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    configured = getattr(generation_config, "eos_token_id", None)
    ids.update([configured] if isinstance(configured, int) else list(configured or []))
    return sorted(i for i in ids if i is not None)


def _answer_suffix(tokenizer, messages, style: str | None, answer: str, kwargs: dict[str, Any]) -> str | None:
    """full conversation minus its prompt, or None when the prompt is not a prefix of the full rendering."""
    prompt = render_prompt(tokenizer, messages, style, kwargs)
    full = _apply(tokenizer, styled_messages(messages, style) + [{"role": "assistant", "content": answer}],
                  kwargs, False)
    return full[len(prompt):] if full.startswith(prompt) else None


def render_completion(tokenizer, messages, style: str | None, answer: str,
                      template_kwargs: dict[str, Any] | None = None) -> str:
    """What the template writes after `render_prompt` for this answer, up to its end-of-turn token.

    Rendered from the full conversation so that template details (Qwen's "<|im_end|>", Mistral's "</s>") come
    from the template itself; checked to extend the prompt exactly, otherwise the labels would be misaligned.
    """
    kwargs = dict(template_kwargs or {})
    suffix = _answer_suffix(tokenizer, messages, style, answer, kwargs)
    if suffix is None and any(m["role"] == "system" for m in messages):
        # Mistral-7B-Instruct-v0.3's template prints the system text only inside the *last* user turn, so it
        # vanishes once the answer follows. The answer's own rendering does not depend on it: take the suffix
        # from the conversation without system turns; the trained prompt still keeps its system text.
        suffix = _answer_suffix(tokenizer, [m for m in messages if m["role"] != "system"], style, answer, kwargs)
    if suffix is None:
        prompt = render_prompt(tokenizer, messages, style, kwargs)
        raise TemplateError(
            "the chat template renders the conversation with the answer differently from the prompt alone "
            f"(prompt ends {prompt[-60:]!r})",
            hint="training needs prompt + completion == full conversation; check the template kwargs")
    completion = suffix.rstrip()
    if tokenizer.eos_token and not completion.endswith(tokenizer.eos_token):
        completion += tokenizer.eos_token
    return completion
