"""`orch eval`: run the payload's evaluation on the instance, show its report (verbosity: the TERSE/VERBOSE
table; classification: accuracy/F1, confusion matrix, and the base model's answers with --compare-base)."""

from __future__ import annotations

import json
import posixpath

from .errors import RemoteError
from .inventory import Instance
from .output import say, table
from .transport.base import Transport


def run_eval(transport: Transport, instance: Instance, run: dict, gate: float | None = None, *,
             samples: int | None = None, compare_base: bool = False) -> dict:
    """Evaluate the run's adapter where it was trained, with its task's evaluation; the report is also kept as
    RUN/eval.json. The gate is the recipe's (a job's `eval_gate` travels in its recipe as an override) unless
    `gate` is given."""
    meta = run.get("meta") or {}
    if not run.get("has_adapter"):
        raise RemoteError(f"{instance.name}: run {run['run_id']} has no adapter to evaluate",
                          hint="wait for the run to finish (`orch status`)")
    run_dir = run["run_dir"]
    argv = [meta["python"], "-m", "remote_payload.evaluate", "--model-dir", meta["model_dir"],
            "--adapter", posixpath.join(run_dir, "adapter"), "--out", posixpath.join(run_dir, "eval.json"), "--json"]
    argv += ["--job", posixpath.join(meta["job_dir"], "job.json")] if meta.get("job_dir") else []
    argv += ["--gate", str(gate)] if gate is not None else []
    argv += ["--samples", str(samples)] if samples else []
    argv += ["--compare-base"] if compare_base else []
    result = transport.run(argv, cwd=meta.get("cwd") or meta.get("payload") or meta.get("bundle"), check=False,
                           timeout=3600)
    try:
        return json.loads(result.text)
    except ValueError:
        raise RemoteError(f"{instance.name}: evaluation failed (exit {result.exit_code}): "
                          f"{result.err_text.strip()[-800:]}") from None


def show_eval(report: dict, run_id: str) -> None:
    """The report of the adapter's task: for verbosity, token counts per style, the ratio against the gate."""
    if report.get("task") == "classification":
        show_classification(report, run_id)
        return
    styles = report.get("styles") or {}
    n = report.get("prompts")
    rows = [(name, n, _num(s.get("mean_tokens")), _num(s.get("median_tokens")), s.get("min_tokens"),
             s.get("max_tokens"), f"{s.get('hit_max_new_tokens', 0)}/{n}") for name, s in styles.items()]
    table(f"verbosity of {run_id}", ["style", "prompts", "mean tokens", "median", "min", "max", "hit max"], rows)
    examples = report.get("examples") or []
    if examples:
        table("examples", ["prompt", "TERSE", "VERBOSE"],
              [(e["prompt"][:40], _answer(e.get("TERSE")), _answer(e.get("VERBOSE"))) for e in examples[:4]])
    verdict = "passed" if report.get("passed") else "FAILED"
    say(f"VERBOSE/TERSE mean token ratio {_num(report.get('ratio'))} (gate {report.get('gate')}): {verdict}",
        style="green" if report.get("passed") else "bold red")


def _answer(answer: dict | None) -> str:
    if not answer:
        return ""
    text = " ".join((answer.get("text") or "").split())
    return f"({answer.get('tokens')}) {text[:80]}{'...' if len(text) > 80 else ''}"


def _num(value) -> str:
    return f"{value:.1f}" if isinstance(value, (int, float)) else str(value)


def show_classification(report: dict, run_id: str) -> None:
    """Accuracy/F1/precision/recall (tuned, and base with --compare-base), confusion matrix, disagreements."""
    runs = [("tuned", report["metrics"])] + ([("base", report["base"]["metrics"])] if report.get("base") else [])
    table(f"classification of {run_id} ({report.get('samples')} samples)",
          ["model", "accuracy", "F1", "precision", "recall", "unparseable", "forced choice"],
          [(name, _num3(m["accuracy"]), _num3(m["f1"]), _num3(m["precision"]), _num3(m["recall"]),
            m["unparseable"], _num3(m.get("choice_accuracy"))) for name, m in runs])
    pos, neg = report["labels"]["positive"], report["labels"]["negative"]
    c = report["metrics"]["confusion"]
    table("confusion (rows: label, columns: answer)", ["label", pos, neg, "unparseable"],
          [(pos, c["tp"], c["fn"] - c["unparseable_positive"], c["unparseable_positive"]),
           (neg, c["fp"], c["tn"], c["unparseable_negative"])])
    differ = report.get("disagreements")
    if differ:
        say(f"base and tuned disagree on {differ['count']}: tuned right {differ['tuned_right_base_wrong']}, "
            f"base right {differ['base_right_tuned_wrong']}, both wrong {differ['both_wrong']}")
        table("disagreements", ["example", "label", "base", "tuned"],
              [(e.get("candidate_title") or e["source"], e["label"], e["base"] or f"? {e['base_text'][:30]!r}",
                e["tuned"] or f"? {e['tuned_text'][:30]!r}") for e in differ["examples"][:10]])
    gate = report.get("gate") or {}
    verdict = "passed" if report.get("passed") else "FAILED"
    say(f"{gate.get('metric')} {_num3(report['metrics'].get(gate.get('metric')))} (gate {gate.get('minimum')}): "
        f"{verdict}", style="green" if report.get("passed") else "bold red")


def _num3(value) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else str(value)
