"""Generation evaluation: greedy answers to held-out prompts, checked by the recipe's validators.

Each example's prompt is rendered by `prompting.encode_prompt` and answered greedily with the section's
`max_new_tokens`; every validator named in `evaluation.validators` (registry: `validators.py`) judges every
answer. The report gives answer lengths, each validator's pass rate, and whether the share of answers that
pass all of them reaches `evaluation.gate` (e.g. `iac-terraform`: validators.py). With no validators named it
reports the answers and their lengths and passes.
"""

from __future__ import annotations

import statistics
from typing import Any

from .classify import left_padded
from .prompting import encode_prompt, stop_token_ids
from .validators import run_validators


def generate(model, tokenizer, recipe, examples) -> list[dict[str, Any]]:
    import torch

    section = recipe.evaluation
    stops = stop_token_ids(tokenizer, getattr(model, "generation_config", None))
    device = next(model.parameters()).device
    answers = []
    for start in range(0, len(examples), section.batch_size):
        batch = examples[start:start + section.batch_size]
        ids, mask = left_padded([encode_prompt(tokenizer, e.messages, None, recipe.chat_template_kwargs)
                                 for e in batch], tokenizer.pad_token_id)
        with torch.no_grad():
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                                 max_new_tokens=section.max_new_tokens, eos_token_id=stops,
                                 pad_token_id=tokenizer.pad_token_id, use_cache=True)
        for example, row in zip(batch, out[:, ids.shape[1]:].tolist()):
            end = next((i for i, t in enumerate(row) if t in stops), len(row))
            answers.append({"source": example.source, "tokens": end,
                            "text": tokenizer.decode(row[:end], skip_special_tokens=True)})
    return answers


def generation_report(model, tokenizer, recipe, examples) -> dict[str, Any]:
    section = recipe.evaluation
    answers = generate(model, tokenizer, recipe, examples)
    for answer in answers:
        answer["validators"] = run_validators(section.validators, answer["text"])
    passing = sum(all(v["passed"] for v in a["validators"].values()) for a in answers)
    rates = {name: round(sum(a["validators"][name]["passed"] for a in answers) / len(answers), 6)
             for name in section.validators}
    pass_rate = round(passing / len(answers), 6) if section.validators else None
    return {"task": "generation", "recipe": recipe.name, "samples": len(answers),
            "mean_tokens": round(statistics.fmean(a["tokens"] for a in answers), 3),
            "validators": list(section.validators), "pass_rates": rates, "pass_rate": pass_rate,
            "gate": section.gate, "passed": pass_rate is None or pass_rate >= section.gate, "answers": answers}


def format_report(report: dict[str, Any]) -> str:
    lines = [f"{report['samples']} answers, mean {report['mean_tokens']} tokens"]
    if not report["validators"]:
        lines.append("no validators configured (evaluation.validators): nothing is gated")
    for name, rate in report["pass_rates"].items():
        lines.append(f"  {name}: {rate:.3f} pass")
    if report["pass_rate"] is not None:
        lines.append(f"all validators pass on {report['pass_rate']:.3f} (gate {report['gate']}): "
                     f"{'PASS' if report['passed'] else 'FAIL'}")
    return "\n".join(lines)
