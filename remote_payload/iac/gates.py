"""Seed 001's IaC success criteria as numbers, and how each is judged from the answers' verdicts.

Each gate is "pass", "fail" or "unchecked" (nothing it could judge: e.g. every Terraform answer needed a
provider that is not available offline); an unchecked gate is reported as such, never as a pass.
"Pass cases" (seed 001: lint and checkov gates apply "on pass cases") are the Terraform answers whose
`terraform validate` did not fail (passed, or could not run offline).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

VALIDATE, LINT, CHECKOV = "terraform validate", "orch-hcl-lint (tflint core rules)", "checkov"
CFN, K8S, HELM, K8S_RENDERED = "cfn-lint", "kubernetes-validate", "helm lint + template", "kubernetes-validate (rendered chart)"


@dataclass(frozen=True)
class Gates:
    terraform_validate_min_pass_rate: float = 0.85   # seed 001: `terraform validate` pass rate >= 85% on held-out prompts
    lint_critical_max: int = 0                       # seed 001: `tflint` critical findings = 0 on pass cases
    checkov_high_max: int = 0                        # seed 001: `checkov` high-severity = 0 on pass cases
    cfn_lint_min_pass_rate: float = 1.0              # seed 001: `cfn-lint` error-free for CFN outputs
    kubernetes_min_pass_rate: float = 1.0            # seed 001: `kubeconform` pass for Kubernetes outputs
    helm_min_pass_rate: float = 1.0                  # orch: a chart must lint, render and give valid Kubernetes

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_rate") and not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise ValueError(f"gate {f.name} must be a fraction between 0 and 1, got {value!r}")
            if f.name.endswith("_max") and not (isinstance(value, int) and value >= 0):
                raise ValueError(f"gate {f.name} must be a whole number >= 0, got {value!r}")

    @classmethod
    def from_json(cls, doc: dict) -> "Gates":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise ValueError(f"unknown gate(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        return cls(**doc)

    def to_json(self) -> dict:
        return asdict(self)


def _gate(kind, name, status, value, threshold, detail):
    return {"kind": kind, "gate": name, "status": status, "value": value, "threshold": threshold, "detail": detail}


def _rate_gate(kind, name, answers, validators, threshold):
    """Share of answers whose named validators all passed, over those where none was unchecked."""
    statuses = [[a["verdicts"][v].status for v in validators if v in a["verdicts"]] for a in answers]
    judged = [s for s in statuses if s and "unchecked" not in s or "fail" in s]
    passed = sum(all(x == "pass" for x in s) for s in judged)
    if not judged:
        return _gate(kind, name, "unchecked", None, threshold, f"no answer could be judged ({len(answers)} not checked)")
    rate = passed / len(judged)
    detail = f"{passed}/{len(judged)} passed" + (f", {len(answers) - len(judged)} not checked" if len(judged) < len(answers) else "")
    return _gate(kind, name, "pass" if rate >= threshold else "fail", round(rate, 4), threshold, detail)


def _count_gate(kind, name, cases, validator, severities, maximum):
    judged = [a for a in cases if validator in a["verdicts"] and a["verdicts"][validator].status != "unchecked"]
    if not judged:
        return _gate(kind, name, "unchecked", None, maximum, f"no pass case could be scanned ({len(cases)} pass cases)")
    total = sum(a["verdicts"][validator].count(*severities) for a in judged)
    detail = f"{total} in {len(judged)} pass case(s)" + (f", {len(cases) - len(judged)} not scanned" if len(judged) < len(cases) else "")
    return _gate(kind, name, "pass" if total <= maximum else "fail", total, maximum, detail)


def evaluate(kind: str, answers: list[dict], gates: Gates) -> list[dict]:
    """The gate results for one kind; `answers` carry "verdicts": {validator name: Verdict}."""
    if not answers:
        return []
    if kind == "terraform":
        cases = [a for a in answers if a["verdicts"][VALIDATE].status != "fail"]
        return [
            _rate_gate(kind, "terraform validate pass rate", answers, [VALIDATE], gates.terraform_validate_min_pass_rate),
            _count_gate(kind, "critical lint findings on pass cases", cases, LINT, ("critical",), gates.lint_critical_max),
            _count_gate(kind, "high-severity checkov findings on pass cases", cases, CHECKOV, ("critical", "high"),
                        gates.checkov_high_max),
        ]
    if kind == "cloudformation":
        return [_rate_gate(kind, "cfn-lint error-free", answers, [CFN], gates.cfn_lint_min_pass_rate)]
    if kind == "kubernetes":
        return [_rate_gate(kind, "Kubernetes schema pass", answers, [K8S], gates.kubernetes_min_pass_rate)]
    if kind == "helm":
        return [_rate_gate(kind, "Helm lint + render + Kubernetes pass", answers, [HELM, K8S_RENDERED],
                           gates.helm_min_pass_rate)]
    return []   # pulumi: seed 001 sets no gate; its pass rate is reported
