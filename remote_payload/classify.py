"""Classification answers and scores, the same code during training and in `evaluate`.

Each example's prompt is rendered by `prompting.encode_prompt` (the function training used), answered greedily
with the section's `max_new_tokens` (seed 003: 8), only the generated tokens are decoded, and
`answers.extract_answer` reads the label word from them. The report also gives a forced-choice accuracy: which
of the two label words' first tokens the model scores higher at the first answer position -- meaningful even for
a model that never writes either word (an untuned base is near 0.5 there, whatever it generates).
"""

from __future__ import annotations

from typing import Any

from .answers import extract_answer
from .prompting import encode_prompt, render_completion, stop_token_ids
from .scoring import disagreements, score


def left_padded(rows: list[list[int]], pad_id: int):
    """(input_ids, attention_mask) with every row ending at the same position, as `generate` wants."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad_id] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


def first_answer_tokens(tokenizer, recipe, example) -> dict[str, int]:
    """The first token the template writes for each label word (what greedy decoding must pick first)."""
    section, kwargs = recipe.evaluation, recipe.chat_template_kwargs
    return {word: tokenizer(render_completion(tokenizer, example.messages, None, word, kwargs),
                            add_special_tokens=False)["input_ids"][0]
            for word in (section.positive, section.negative)}


def _decode(tokenizer, row: list[int], stops: set[int]) -> str:
    end = next((i for i, token in enumerate(row) if token in stops), len(row))
    return tokenizer.decode(row[:end], skip_special_tokens=True)


def answer_examples(model, tokenizer, recipe, examples) -> list[dict[str, Any]]:
    """One greedy answer per example: [{"source", "label", "text", "prediction", "choice", ...meta}]."""
    import torch

    section = recipe.evaluation
    stops = stop_token_ids(tokenizer, getattr(model, "generation_config", None))
    firsts = first_answer_tokens(tokenizer, recipe, examples[0])
    device = next(model.parameters()).device
    answers = []
    for start in range(0, len(examples), section.batch_size):
        batch = examples[start:start + section.batch_size]
        ids, mask = left_padded([encode_prompt(tokenizer, e.messages, None, recipe.chat_template_kwargs)
                                 for e in batch], tokenizer.pad_token_id)
        with torch.no_grad():
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                                 max_new_tokens=section.max_new_tokens, eos_token_id=stops,
                                 pad_token_id=tokenizer.pad_token_id, use_cache=True, output_logits=True,
                                 return_dict_in_generate=True)
        first_logits = out.logits[0].float()
        for row, (example, generated) in enumerate(zip(batch, out.sequences[:, ids.shape[1]:].tolist())):
            text = _decode(tokenizer, generated, set(stops))
            scores = {word: first_logits[row, token].item() for word, token in firsts.items()}
            answers.append({"source": example.source, "label": example.label, "text": text,
                            "prediction": extract_answer(text, section.positive, section.negative),
                            "choice": max(scores, key=scores.get), **{k: v for k, v in example.meta.items()
                                                                     if k in ("user_id", "candidate_title")}})
    return answers


def summarize(recipe, answers: list[dict[str, Any]]) -> dict[str, Any]:
    """Scores of a list of answers, plus the forced-choice accuracy."""
    section = recipe.evaluation
    labels = [a["label"] for a in answers]
    metrics = score(labels, [a["prediction"] for a in answers], section.positive, section.negative)
    metrics["choice_accuracy"] = round(sum(a["choice"] == a["label"] for a in answers) / len(answers), 6)
    return metrics


def classification_report(model, tokenizer, recipe, examples, compare_base: bool = False,
                          gate: float | None = None) -> dict[str, Any]:
    """The evaluation report of a classification adapter (and, with compare_base, of its base alone)."""
    section = recipe.evaluation
    gate = section.gate if gate is None else gate
    tuned = answer_examples(model, tokenizer, recipe, examples)
    report = {"task": "classification", "recipe": recipe.name, "samples": len(examples),
              "labels": {"positive": section.positive, "negative": section.negative},
              "metrics": summarize(recipe, tuned), "gate": {"metric": section.gate_metric, "minimum": gate},
              "predictions": tuned}
    report["passed"] = report["metrics"][section.gate_metric] >= gate
    if compare_base:
        with model.disable_adapter():
            base = answer_examples(model, tokenizer, recipe, examples)
        labels = [a["label"] for a in tuned]
        differ = disagreements(labels, [a["prediction"] for a in base], [a["prediction"] for a in tuned])
        report["base"] = {"metrics": summarize(recipe, base), "predictions": base}
        report["disagreements"] = {**{k: v for k, v in differ.items() if k != "indices"}, "examples": [
            {**{k: tuned[i].get(k) for k in ("source", "user_id", "candidate_title", "label")},
             "base": base[i]["prediction"], "base_text": base[i]["text"], "tuned": tuned[i]["prediction"],
             "tuned_text": tuned[i]["text"]} for i in differ["indices"]]}
    return report


def format_report(report: dict[str, Any], examples: int = 5) -> str:
    """Plain-text summary for a terminal or the run log."""
    def line(name: str, m: dict) -> str:
        return (f"{name:<6} accuracy {m['accuracy']:.3f}  F1 {m['f1']:.3f}  precision {m['precision']:.3f}  "
                f"recall {m['recall']:.3f}  unparseable {m['unparseable']}/{m['samples']}  "
                f"forced-choice accuracy {m['choice_accuracy']:.3f}")

    m, pos, neg = report["metrics"], report["labels"]["positive"], report["labels"]["negative"]
    c = m["confusion"]
    lines = [line("tuned", m)]
    if "base" in report:
        lines.append(line("base", report["base"]["metrics"]))
    lines += [f"confusion (label -> answer): {pos}->{pos} {c['tp']}  {pos}->{neg} {c['fn'] - c['unparseable_positive']}"
              f"  {neg}->{pos} {c['fp']}  {neg}->{neg} {c['tn']}  unparseable {m['unparseable']}"]
    if "disagreements" in report:
        d = report["disagreements"]
        lines.append(f"base and tuned disagree on {d['count']}: tuned right {d['tuned_right_base_wrong']}, "
                     f"base right {d['base_right_tuned_wrong']}, both wrong {d['both_wrong']}")
        for e in d["examples"][:examples]:
            lines.append(f"  {e['source']} label {e['label']}: base {e['base']} ({e['base_text'][:40]!r}), "
                         f"tuned {e['tuned']} ({e['tuned_text'][:40]!r})")
    gate = report["gate"]
    verdict = "PASS" if report["passed"] else "FAIL"
    lines.append(f"{gate['metric']} {m[gate['metric']]:.3f} (gate {gate['minimum']}): {verdict}")
    return "\n".join(lines)
