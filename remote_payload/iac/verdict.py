"""What one validator says about one answer: a status, findings with severities, and what it could not check.

`status` is "pass", "fail" or "unchecked" (the validator could not run on this answer at all, e.g. no provider
offline); `unchecked` lists what was left out even when the status is pass or fail, so a partial check is
never reported as a full one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# "unrated": the tool gives no severity (checkov offline) and the check is not on orch's high-severity list.
SEVERITIES = ("critical", "high", "medium", "low", "info", "unrated")
STATUSES = ("pass", "fail", "unchecked")


@dataclass(frozen=True)
class Finding:
    severity: str
    message: str
    file: str | None = None
    line: int | None = None
    rule: str | None = None          # the tool's id for it: CKV_AWS_20, E3002, terraform_typed_variables, ...

    def __post_init__(self):
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity {self.severity!r} is not one of {SEVERITIES}")

    def where(self) -> str:
        if not self.file:
            return ""
        return f"{self.file}:{self.line}" if self.line else self.file

    def describe(self) -> str:
        head = f"{self.where()}: " if self.file else ""
        rule = f"[{self.rule}] " if self.rule else ""
        return f"{head}{rule}{self.message}"


@dataclass
class Verdict:
    validator: str
    status: str
    findings: list[Finding] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} is not one of {STATUSES}")

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    def count(self, *severities: str) -> int:
        return sum(f.severity in severities for f in self.findings)

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["seconds"] = round(self.seconds, 3)
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "Verdict":
        return cls(validator=doc["validator"], status=doc["status"],
                   findings=[Finding(**f) for f in doc.get("findings", [])],
                   unchecked=list(doc.get("unchecked", [])), seconds=float(doc.get("seconds", 0.0)))


def verdict_from(validator: str, findings: list[Finding], fail_on: tuple[str, ...], unchecked=(),
                 seconds: float = 0.0) -> Verdict:
    """pass unless a finding has a severity in `fail_on`."""
    failed = any(f.severity in fail_on for f in findings)
    return Verdict(validator, "fail" if failed else "pass", list(findings), list(unchecked), seconds)


def no_code(validator: str, kind: str) -> Verdict:
    return Verdict(validator, "fail", [Finding("critical", f"no {kind} code found in the answer")])
