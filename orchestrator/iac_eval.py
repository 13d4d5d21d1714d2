"""`orch eval --suite iac`: the run's adapter answers held-out IaC prompts on the instance
(remote_payload/iac_answers.py, prompts sent on stdin), the answers come back, and remote_payload/iac validates
them -- here, with this machine's validators venv (`orch validators install`), or with `--remote-validate` on
the instance, in a validators venv built there on demand (`work_dir/validators/<requirements hash>/`).
The answers are kept on the instance in RUN/iac/answers.jsonl and the report in RUN/iac/report.json.
"""

from __future__ import annotations

import json
import posixpath
from pathlib import Path

from .errors import InputError, OrchError, RemoteError
from .inventory import Instance
from .transport.base import Transport

DEFAULT_PROMPTS = Path(__file__).resolve().parent.parent / "training_data" / "iac_eval_prompts.jsonl"


def read_prompts_file(path: str | Path | None) -> bytes:
    """The prompts' bytes (checked as the payload will check them: one bad line fails here, before connecting)."""
    from remote_payload.errors import PayloadError
    from remote_payload.iac_answers import read_prompts

    source = Path(path) if path else DEFAULT_PROMPTS
    if not source.is_file():
        raise InputError(f"IaC prompts {source} not found",
                         hint="pass --prompts FILE (JSONL of {\"kind\", \"instruction\", ...}, as in "
                              "training_data/iac_eval_prompts.jsonl)")
    data = source.read_bytes()
    try:
        read_prompts(data.decode("utf-8"), str(source))
    except (UnicodeDecodeError, PayloadError) as exc:
        raise InputError(str(exc), hint="one JSON object a line, as in training_data/iac_eval_prompts.jsonl")
    return data


def _remote_json(result, instance: Instance, what: str) -> dict:
    try:
        return json.loads(result.text)
    except ValueError:
        error = InputError if result.exit_code == 2 else RemoteError
        raise error(f"{instance.name}: {what} failed (exit {result.exit_code}): {result.err_text.strip()[-800:]}") \
            from None


def answer_on_instance(transport: Transport, instance: Instance, run: dict, prompts: bytes, *,
                       max_new_tokens: int, style: str) -> dict:
    """The adapter's answers ({"answers": [...], "out": path on the instance, ...})."""
    meta = run.get("meta") or {}
    if not run.get("has_adapter"):
        raise RemoteError(f"{instance.name}: run {run['run_id']} has no adapter to evaluate",
                          hint="wait for the run to finish (`orch status`)")
    argv = [meta["python"], "-m", "remote_payload.iac_answers", "--model-dir", meta["model_dir"],
            "--adapter", posixpath.join(run["run_dir"], "adapter"), "--prompts", "-",
            "--out", posixpath.join(run["run_dir"], "iac", "answers.jsonl"), "--json",
            "--max-new-tokens", str(max_new_tokens), "--style", style]
    result = transport.run(argv, cwd=meta.get("cwd") or meta.get("payload"), stdin=prompts, check=False,
                           timeout=4 * 3600)
    return _remote_json(result, instance, "answering the IaC prompts")


def validate_here(answers: list[dict], say) -> dict:
    from remote_payload.errors import PayloadError
    from remote_payload.iac.suite import evaluate_answers

    try:
        return evaluate_answers(answers, say=say)
    except PayloadError as exc:
        error = InputError if exc.exit_code == 2 else OrchError
        raise error(exc.message, hint=exc.hint) from None


def validate_on_instance(transport: Transport, instance: Instance, run: dict, answers_path: str, say) -> dict:
    """Install the validators venv on the instance if needed (system python, its own venv), then run the suite
    there on the answers it already holds."""
    meta = run.get("meta") or {}
    cwd = meta.get("cwd") or meta.get("payload")
    root = posixpath.join(instance.work_dir, "validators")
    say(f"validators on {instance.name}: {root} (built on first use: ~1 GB, a few minutes)")
    installed = _remote_json(transport.run([instance.python, "-m", "remote_payload.iac.install", "--root", root,
                                            "--json"], cwd=cwd, check=False, timeout=3600),
                             instance, "installing the validators")
    out = posixpath.join(run["run_dir"], "iac", "report.json")
    result = transport.run([instance.python, "-m", "remote_payload.iac.suite", "--answers", answers_path,
                            "--venv", installed["venv"], "--out", out, "--json"], cwd=cwd, check=False,
                           timeout=3600)
    return _remote_json(result, instance, "validating the answers")


def by_source(report: dict, answers: list[dict]) -> dict[str, dict]:
    """Per prompt source ("train": the model saw the prompt; "unseen"): answers, how many every validator
    passed, and the terraform validate pass rate among those it could check."""
    from remote_payload.iac.gates import VALIDATE

    source_of = {a["id"]: a.get("source") or "unknown" for a in answers}
    out: dict[str, dict] = {}
    for result in report["results"]:
        row = out.setdefault(source_of.get(result["id"], "unknown"),
                             {"answers": 0, "all_pass": 0, "validate_pass": 0, "validate_checked": 0})
        statuses = [v["status"] for v in result["verdicts"].values()]
        row["answers"] += 1
        row["all_pass"] += bool(statuses) and all(s == "pass" for s in statuses)
        validate = result["verdicts"].get(VALIDATE)
        if validate and validate["status"] != "unchecked":
            row["validate_checked"] += 1
            row["validate_pass"] += validate["status"] == "pass"
    for row in out.values():
        row["all_pass_rate"] = round(row["all_pass"] / row["answers"], 3)
        row["validate_pass_rate"] = round(row["validate_pass"] / row["validate_checked"], 3) \
            if row["validate_checked"] else None
    return out


def iac_summary(report: dict, answered: dict) -> dict:
    """What `orch eval --suite iac --json` adds beside the validators' report: answer lengths and sources."""
    answers = answered["answers"]
    return {"answers": len(answers), "by_source": by_source(report, answers),
            "hit_max_new_tokens": sum(a["hit_max_new_tokens"] for a in answers),
            "mean_tokens": round(sum(a["tokens"] for a in answers) / max(1, len(answers)), 1),
            "answers_file": answered["out"], "seconds_answering": answered["seconds"],
            "parent": answered.get("parent"), "lineage": answered.get("lineage"), "passed": report["ok"]}
