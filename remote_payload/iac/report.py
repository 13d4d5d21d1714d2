"""The IaC report: per kind, each validator's pass rate, the gates, failures with the tool's own message,
the tool versions, and what could not be checked (with how many answers it concerns).

`build(...)` gives the JSON document (see remote_payload/iac/README.md); `format_text(doc)` a plain-text
rendering for terminals and logs.
"""

from __future__ import annotations

from collections import Counter

from .gates import Gates, evaluate
from .kinds import KINDS

MAX_MESSAGES = 5


def _validator_rows(answers: list[dict]) -> dict[str, dict]:
    rows: dict[str, dict] = {}
    for answer in answers:
        for name, verdict in answer["verdicts"].items():
            row = rows.setdefault(name, {"passed": 0, "failed": 0, "unchecked": 0})
            row[{"pass": "passed", "fail": "failed", "unchecked": "unchecked"}[verdict.status]] += 1
    for row in rows.values():
        judged = row["passed"] + row["failed"]
        row["pass_rate"] = round(row["passed"] / judged, 4) if judged else None
    return rows


def _failures(answers: list[dict]) -> list[dict]:
    out = []
    for answer in answers:
        for name, verdict in answer["verdicts"].items():
            if verdict.status != "fail":
                continue
            serious = [f for f in verdict.findings if f.severity in ("critical", "high")] or verdict.findings
            out.append({"answer": answer["id"], "prompt": answer["prompt"][:120], "validator": name,
                        "messages": [f.describe() for f in serious[:MAX_MESSAGES]],
                        "more": max(0, len(serious) - MAX_MESSAGES)})
    return out


def _not_checked(answers: list[dict]) -> list[dict]:
    counts: Counter = Counter()
    for answer in answers:
        for name, verdict in answer["verdicts"].items():
            for note in dict.fromkeys(verdict.unchecked):
                counts[(name, note)] += 1
    return [{"validator": name, "what": note, "answers": n} for (name, note), n in sorted(counts.items())]


def build(answers: list[dict], gates: Gates, versions: dict[str, str], terraform: str) -> dict:
    """answers: [{"id", "kind", "prompt", "origin", "files", "verdicts": {name: Verdict}}] -> the report."""
    kinds, all_gates = {}, []
    for kind in KINDS:
        group = [a for a in answers if a["kind"] == kind]
        if not group:
            continue
        kind_gates = evaluate(kind, group, gates)
        all_gates += kind_gates
        kinds[kind] = {"answers": len(group), "no_code": sum(not a["files"] for a in group),
                       "validators": _validator_rows(group), "gates": kind_gates,
                       "failures": _failures(group), "not_checked": _not_checked(group)}
    judged = [g for g in all_gates if g["status"] != "unchecked"]
    failed = [g for g in all_gates if g["status"] == "fail"]
    ok = bool(judged) and not failed
    reason = "all gates passed" if ok else (f"{len(failed)} gate(s) failed" if failed else "no gate could be judged")
    return {"ok": ok, "reason": reason, "answers": len(answers), "gates": all_gates, "kinds": kinds,
            "versions": versions, "terraform_binary": terraform, "thresholds": gates.to_json(),
            "results": [{**{k: a[k] for k in ("id", "kind", "prompt", "origin")}, "files": sorted(a["files"]),
                         "verdicts": {n: v.to_json() for n, v in a["verdicts"].items()}} for a in answers]}


def _pct(value) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def format_text(doc: dict) -> str:
    lines = [f"IaC validation: {doc['answers']} answer(s) - {'PASS' if doc['ok'] else 'FAIL'} ({doc['reason']})"]
    for kind, part in doc["kinds"].items():
        lines.append(f"\n== {kind}: {part['answers']} answer(s)" + (f", {part['no_code']} without code" if part["no_code"] else ""))
        for name, row in part["validators"].items():
            lines.append(f"  {name:<40} {_pct(row['pass_rate']):>5}  pass {row['passed']}  fail {row['failed']}"
                         f"  not checked {row['unchecked']}")
        for gate in part["gates"]:
            lines.append(f"  gate {gate['gate']}: {gate['status'].upper()} ({gate['detail']}; threshold {gate['threshold']})")
        for failure in part["failures"][:20]:
            lines.append(f"  FAIL {failure['answer']} {failure['validator']}: " + "; ".join(failure["messages"]))
        for note in part["not_checked"]:
            lines.append(f"  not checked ({note['answers']} answer(s), {note['validator']}): {note['what']}")
    lines.append("\nversions: " + "; ".join(f"{k} {v}" for k, v in doc["versions"].items()))
    lines.append(f"terraform binary: {doc['terraform_binary']}")
    return "\n".join(lines)
