"""The model's answers to held-out IaC prompts, for `orch eval --suite iac` (validated by remote_payload/iac).

    python -m remote_payload.iac_answers --model-dir DIR --adapter RUN/adapter --prompts FILE|- --out ANSWERS.jsonl
                                         [--max-new-tokens N] [--style TERSE|VERBOSE] [--batch-size N] [--json]

Prompts: JSONL, one {"id", "kind", "instruction", "input"?, "system"?, "style"?, "source"?} a line (the format
of training_data/iac_eval_prompts.jsonl); `-` reads them from stdin. Each is rendered like training data (system
turn, else the recipe's system_prompt; instruction and input in the user turn; the style token when the adapter
has style tokens: the prompt's "style", else --style) and answered greedily. ANSWERS.jsonl gets one {"id",
"kind", "prompt", "answer", "tokens", "hit_max_new_tokens", "source", "style"} a line -- the input of
`python -m remote_payload.iac.suite --answers`. With --json the same answers are printed as one JSON document.
Exit status: 0 answered, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from .errors import InputError, PayloadError
from .iac.kinds import normalize_kind
from .styles import normalize_style


def read_prompts(text: str, where: str) -> list[dict[str, Any]]:
    prompts, problems = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not str(row.get("instruction") or "").strip():
                raise ValueError('needs a non-empty "instruction"')
            row["kind"] = normalize_kind(row.get("kind"))
        except ValueError as exc:
            problems.append(f"{where}:{number}: {exc}")
            continue
        row.setdefault("id", f"{len(prompts) + 1:04d}")
        prompts.append(row)
    if problems or not prompts:
        raise InputError(f"bad IaC prompts in {where}" + "".join(f"\n  {p}" for p in problems[:20]) if problems
                         else f"{where} holds no prompts", hint="one JSON object a line, as in iac_eval_prompts.jsonl")
    return prompts


def messages_of(prompt: dict[str, Any], system_prompt: str) -> list[dict[str, str]]:
    system = str(prompt.get("system") or system_prompt or "").strip()
    user = str(prompt["instruction"]).strip()
    extra = str(prompt.get("input") or "").strip()
    content = f"{user}\n\n{extra}" if extra else user
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": content}]


def answer_prompts(model, tokenizer, recipe, prompts, *, max_new_tokens: int, style: str | None,
                   batch_size: int, styled: bool) -> list[dict[str, Any]]:
    import torch

    from .classify import left_padded
    from .prompting import encode_prompt, stop_token_ids

    stops = stop_token_ids(tokenizer, getattr(model, "generation_config", None))
    device = next(model.parameters()).device
    answers = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start:start + batch_size]
        styles = [(normalize_style(p.get("style")) or style) if styled else None for p in batch]
        rows = [encode_prompt(tokenizer, messages_of(p, recipe.system_prompt), s, recipe.chat_template_kwargs)
                for p, s in zip(batch, styles)]
        ids, mask = left_padded(rows, tokenizer.pad_token_id)
        with torch.no_grad():
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                                 max_new_tokens=max_new_tokens, eos_token_id=stops,
                                 pad_token_id=tokenizer.pad_token_id, use_cache=True)
        for prompt, chosen, row in zip(batch, styles, out[:, ids.shape[1]:].tolist()):
            end = next((i for i, t in enumerate(row) if t in stops), len(row))
            answers.append({"id": prompt["id"], "kind": prompt["kind"], "prompt": prompt["instruction"],
                            "answer": tokenizer.decode(row[:end], skip_special_tokens=True), "tokens": end,
                            "hit_max_new_tokens": end >= max_new_tokens, "source": prompt.get("source"),
                            "style": chosen})
    return answers


def parse_args(argv: list[str] | None):
    parser = argparse.ArgumentParser(prog="python -m remote_payload.iac_answers", description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--adapter", required=True)
    parser.add_argument("--prompts", required=True, help="JSONL of IaC prompts, or - for stdin")
    parser.add_argument("--out", required=True, help="where the answers JSONL goes")
    parser.add_argument("--max-new-tokens", type=int, default=1024)
    parser.add_argument("--style", default="TERSE", help="style token for prompts without one (adapters with "
                                                        "style tokens only; TERSE: code without prose)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from .runtime_env import apply_runtime_env, quiet_known_warnings

    apply_runtime_env()
    quiet_known_warnings()
    try:
        if args.max_new_tokens < 1 or args.batch_size < 1:
            raise InputError("--max-new-tokens and --batch-size must be >= 1")
        style = normalize_style(args.style)
        if style is None:
            raise InputError(f"--style must be TERSE or VERBOSE (got {args.style!r})")
        text = sys.stdin.read() if args.prompts == "-" else Path(args.prompts).read_text(encoding="utf-8")
        prompts = read_prompts(text, "stdin" if args.prompts == "-" else args.prompts)
        from .modeling import load_for_inference

        t0 = time.monotonic()
        model, tokenizer, recipe, meta = load_for_inference(args.model_dir, args.adapter)
        answers = answer_prompts(model, tokenizer, recipe, prompts, max_new_tokens=args.max_new_tokens,
                                 style=style, batch_size=args.batch_size, styled=bool(meta.get("style_tokens")))
    except OSError as exc:
        print(f"iac_answers: cannot read {args.prompts}: {exc.strerror}", file=sys.stderr)
        return 2
    except PayloadError as exc:
        print(f"iac_answers: {exc}", file=sys.stderr)
        return exc.exit_code
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(a, ensure_ascii=False) + "\n" for a in answers), encoding="utf-8")
    doc = {"answers": answers, "out": str(out), "seconds": round(time.monotonic() - t0, 2),
           "max_new_tokens": args.max_new_tokens, "recipe": recipe.name, "parent": meta.get("parent"),
           "lineage": meta.get("lineage") or []}
    print(json.dumps(doc, ensure_ascii=False) if args.json else f"{len(answers)} answers written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
