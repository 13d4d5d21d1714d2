"""Helm charts: `helm lint` plus an offline `helm template`, with the Helm 4 SDK (helm-python-sdk).

The rendered manifests are written to `<workdir>/.rendered/`, where the suite then runs the Kubernetes
validator on them, so a chart passes only when it lints, renders and yields valid Kubernetes objects.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from .toolchain import TOOLS
from .validator import Validator
from .verdict import Finding, Verdict, verdict_from

RENDERED = ".rendered"
LINT_SEVERITY = {"error": "high", "warning": "medium", "info": "info", "unknown": "info"}


def chart_root(workdir: Path) -> Path | None:
    """The folder holding Chart.yaml (the answer's top level, or one folder below it)."""
    for candidate in [workdir, *sorted(p for p in workdir.iterdir() if p.is_dir() and not p.name.startswith("."))]:
        if (candidate / "Chart.yaml").is_file():
            return candidate
    return None


class HelmChart(Validator):
    name = "helm lint + template"
    kinds = ("helm",)

    def version(self) -> str:
        return self.tc.version("helm", [self.tc.python, "-c", "import helm_python as h; "
                                        "print(f'Helm SDK {h.helm_sdk_version()} (helm-python-sdk {h.__version__})')"])

    def check_many(self, workdirs: list[Path]) -> list[Verdict]:
        roots = {w: chart_root(w) for w in workdirs}
        charts = [{"chart": str(root), "out": str(w / RENDERED)} for w, root in roots.items() if root]
        t0 = time.monotonic()
        results = {}
        if charts:
            done = self.tc.run([self.tc.python, TOOLS / "helm_render.py"], stdin=json.dumps({"charts": charts}),
                               timeout=600)
            try:
                results = {c["chart"]: c for c in json.loads(done.stdout)["charts"]}
            except (ValueError, KeyError):
                message = (done.stderr or done.stdout).strip()[-500:]
                return [Verdict(self.name, "unchecked", unchecked=[f"the helm runner failed: {message}"])
                        for _ in workdirs]
        seconds = (time.monotonic() - t0) / max(len(workdirs), 1)
        return [self._verdict(results.get(str(root)) if root else None, seconds) for root in roots.values()]

    def _verdict(self, result: dict | None, seconds: float) -> Verdict:
        if result is None:
            return Verdict(self.name, "fail", [Finding("critical", "no Chart.yaml in the answer: not a Helm chart")],
                           seconds=seconds)
        findings = [Finding(LINT_SEVERITY.get(m["severity"], "info"), m["message"] or "", m.get("path"), rule="helm lint")
                    for m in result["lint"]]
        if result["render_error"]:
            findings.append(Finding("critical", result["render_error"], rule="helm template"))
        elif not result["manifests"]:
            findings.append(Finding("critical", "the chart renders no Kubernetes manifest", rule="helm template"))
        return verdict_from(self.name, findings, ("critical", "high"), seconds=seconds)
