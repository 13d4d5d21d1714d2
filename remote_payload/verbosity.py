"""Verbosity evaluation: answer held-out prompts in both styles and compare answer lengths.

Each prompt is rendered by `prompting.encode_prompt` (the function training used) once with <STYLE_TERSE> and
once with <STYLE_VERBOSE>, and decoded with the recipe's per-style generation preset (seeds 000/002). An
answer's length is the number of tokens generated before the end-of-turn token. The report gives mean and
median per style, the VERBOSE/TERSE ratio of the means, every answer, and whether the ratio reaches the gate
(default: the recipe's evaluation.gate, 3.0). Run through `python -m remote_payload.evaluate`.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from .errors import DatasetError
from .prompting import encode_prompt, stop_token_ids
from .recipes import GenerationPreset, Recipe
from .styles import STYLE_TOKENS, STYLES

DEFAULT_PROMPTS = Path(__file__).resolve().parent / "data" / "eval_prompts.jsonl"


def load_prompts(path: str | Path = DEFAULT_PROMPTS) -> list[str]:
    """Questions from a JSONL file of {"prompt": "..."} objects; bad lines reported as file:line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read prompts file {path}: {exc}") from None
    prompts, problems = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{path.name}:{number}: bad JSON: {exc.msg}")
            continue
        prompt = record.get("prompt") if isinstance(record, dict) else None
        if not isinstance(prompt, str) or not prompt.strip():
            problems.append(f'{path.name}:{number}: expected {{"prompt": "non-empty question"}}')
        elif any(token in prompt for token in STYLE_TOKENS.values()):
            problems.append(f"{path.name}:{number}: contains a style token; evaluation adds it for each style")
        else:
            prompts.append(prompt.strip())
    if problems:
        raise DatasetError(f"{path}: {len(problems)} bad line(s)", problems)
    if not prompts:
        raise DatasetError(f"{path}: no prompts")
    return prompts


def prompt_batch(tokenizer, questions: list[str], style: str, template_kwargs: dict[str, Any]):
    """(input_ids, attention_mask) fed to `generate`: each question as a one-turn conversation rendered by
    `prompting.encode_prompt`, left-padded so that every row's answer starts at the same position."""
    import torch

    rows = [encode_prompt(tokenizer, [{"role": "user", "content": q}], style, template_kwargs) for q in questions]
    width = max(len(r) for r in rows)
    ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


def _answer_length(generated: list[int], stops: set[int]) -> tuple[int, bool]:
    """Tokens before the first stop token, and whether no stop token came (max_new_tokens was hit)."""
    for index, token in enumerate(generated):
        if token in stops:
            return index, False
    return len(generated), True


def generate_answers(model, tokenizer, prompts: list[str], style: str, preset: GenerationPreset,
                     template_kwargs: dict[str, Any], batch_size: int, seed: int) -> list[dict[str, Any]]:
    """One answer per prompt in `style`: [{"prompt", "text", "tokens", "hit_max_new_tokens"}]."""
    import torch

    stops = stop_token_ids(tokenizer, getattr(model, "generation_config", None))
    style_ids = [tokenizer.convert_tokens_to_ids(t) for t in STYLE_TOKENS.values()]
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    answers = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start:start + batch_size]
        ids, mask = prompt_batch(tokenizer, batch, style, template_kwargs)
        with torch.no_grad():
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), eos_token_id=stops,
                                 pad_token_id=tokenizer.pad_token_id, suppress_tokens=style_ids,
                                 **preset.generate_kwargs())
        for question, row in zip(batch, out[:, ids.shape[1]:].tolist()):
            length, hit_max = _answer_length(row, set(stops))
            answers.append({"prompt": question, "tokens": length, "hit_max_new_tokens": hit_max,
                            "text": tokenizer.decode(row[:length], skip_special_tokens=True)})
    return answers


def _style_summary(answers: list[dict[str, Any]], preset: GenerationPreset) -> dict[str, Any]:
    counts = [a["tokens"] for a in answers]
    return {"mean_tokens": round(statistics.fmean(counts), 3), "median_tokens": statistics.median(counts),
            "min_tokens": min(counts), "max_tokens": max(counts),
            "hit_max_new_tokens": sum(a["hit_max_new_tokens"] for a in answers),
            "preset": preset.generate_kwargs()}


def run_evaluation(model, tokenizer, recipe: Recipe, prompts: list[str], gate: float | None = None
                   ) -> dict[str, Any]:
    """The evaluation report (a JSON-ready dict) for an already loaded model + adapter."""
    gate = recipe.evaluation.gate if gate is None else gate
    presets = {"TERSE": recipe.evaluation.terse, "VERBOSE": recipe.evaluation.verbose}
    answers = {style: generate_answers(model, tokenizer, prompts, style, presets[style],
                                       recipe.chat_template_kwargs, recipe.evaluation.batch_size, recipe.seed)
               for style in STYLES}
    styles = {style: _style_summary(answers[style], presets[style]) for style in STYLES}
    terse, verbose = styles["TERSE"]["mean_tokens"], styles["VERBOSE"]["mean_tokens"]
    ratio = round(verbose / terse, 3) if terse > 0 else None
    return {"task": "verbosity", "recipe": recipe.name, "prompts": len(prompts), "gate": gate,
            "ratio": ratio, "passed": ratio is not None and ratio >= gate,
            "note": None if ratio is not None else "TERSE answers are all empty; the ratio is undefined",
            "styles": styles, "seed": recipe.seed,
            "examples": [{"prompt": q, "TERSE": {k: t[k] for k in ("text", "tokens")},
                          "VERBOSE": {k: v[k] for k in ("text", "tokens")}}
                         for q, t, v in zip(prompts, answers["TERSE"], answers["VERBOSE"])]}


def format_table(report: dict[str, Any], examples: int = 3) -> str:
    """A plain-text summary for people reading a terminal or the run log."""
    lines = [f"{'style':<8} {'mean':>7} {'median':>7} {'min':>5} {'max':>5}  hit max_new_tokens"]
    for style in STYLES:
        s = report["styles"][style]
        lines.append(f"{style:<8} {s['mean_tokens']:>7.1f} {s['median_tokens']:>7} {s['min_tokens']:>5} "
                     f"{s['max_tokens']:>5}  {s['hit_max_new_tokens']}/{report['prompts']}")
    ratio = "undefined" if report["ratio"] is None else f"{report['ratio']:.2f}"
    verdict = "PASS" if report["passed"] else "FAIL"
    lines.append(f"VERBOSE/TERSE mean-token ratio {ratio} (gate {report['gate']}): {verdict}")
    for example in report["examples"][:examples]:
        lines.append(f"Q: {example['prompt']}")
        for style in STYLES:
            text = " ".join(example[style]["text"].split())
            shown = text if len(text) <= 150 else text[:150] + "..."
            lines.append(f"  {style:<7} ({example[style]['tokens']:>3}): {shown}")
    return "\n".join(lines)
