"""Lint and render Helm charts offline; runs ONLY with the validators venv's python (imports helm_python).

    <validators venv>/bin/python helm_render.py < {"charts": [{"chart": DIR, "out": DIR}, ...]}

For each chart: `helm lint` messages, then the templates rendered as for `helm install release` in namespace
"default" (no cluster contacted; `lookup` returns nothing), each rendered manifest written under "out".
Prints one JSON document: {"helm": version, "charts": [{"chart", "lint": [...], "render_error", "manifests"}]}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import helm_python
from helm_python import chart as helm_chart

SEVERITY = {0: "unknown", 1: "info", 2: "warning", 3: "error"}


def lint_and_render(chart_dir: str, out_dir: str) -> dict:
    result = {"chart": chart_dir, "lint": [], "render_error": None, "manifests": []}
    try:
        report = helm_chart.lint(chart_dir)
        result["lint"] = [{"severity": SEVERITY.get(m.get("severity"), "unknown"), "path": m.get("path"),
                           "message": m.get("error")} for m in report.get("messages", [])]
    except Exception as exc:  # malformed input raises; the message is the finding
        result["lint"] = [{"severity": "error", "path": None, "message": f"{type(exc).__name__}: {exc}"}]
    try:
        rendered = helm_chart.Chart.load(chart_dir).render(name="release", namespace="default", is_install=True)
    except Exception as exc:
        result["render_error"] = f"{type(exc).__name__}: {exc}"
        return result
    out = Path(out_dir)
    for template, text in sorted(rendered.items()):
        if not text.strip() or not template.endswith((".yaml", ".yml", ".json")):
            continue   # NOTES.txt, helpers and templates that render to nothing
        target = out / template
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        result["manifests"].append(str(target))
    return result


def main() -> int:
    request = json.load(sys.stdin)
    charts = [lint_and_render(c["chart"], c["out"]) for c in request["charts"]]
    json.dump({"helm": helm_python.helm_sdk_version(), "sdk": helm_python.__version__, "charts": charts}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
