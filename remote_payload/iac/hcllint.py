"""orch-hcl-lint, standing in for tflint (not installable here): its core Terraform rules plus structure checks.

The rules run in tools/hcl_lint.py under the validators venv's python (they parse HCL with bc-python-hcl2);
this driver sends all answers' folders in one call. tflint's "error" findings are critical here (seed 001's
gate: 0 critical lint findings on the answers that pass terraform validate); its "warning"s are medium.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from .toolchain import TOOLS
from .validator import Validator, files_in
from .verdict import Finding, Verdict, verdict_from

SEVERITY = {"error": "critical", "warning": "medium", "notice": "low"}


class HclLint(Validator):
    name = "orch-hcl-lint (tflint core rules)"
    kinds = ("terraform",)

    def version(self) -> str:
        return self.tc.version("orch-hcl-lint", [self.tc.python, "-c", "from importlib.metadata import version; "
                                                 "print('orch rules over bc-python-hcl2 ' + version('bc-python-hcl2'))"])

    def check_many(self, workdirs: list[Path]) -> list[Verdict]:
        if not workdirs:
            return []
        t0 = time.monotonic()
        done = self.tc.run([self.tc.python, TOOLS / "hcl_lint.py"], stdin=json.dumps({"dirs": [str(w) for w in workdirs]}),
                           timeout=600)
        seconds = (time.monotonic() - t0) / len(workdirs)
        try:
            results = {d["dir"]: d["findings"] for d in json.loads(done.stdout)["dirs"]}
        except (ValueError, KeyError):
            message = (done.stderr or done.stdout).strip()[-500:]
            return [Verdict(self.name, "unchecked", unchecked=[f"the lint runner failed: {message}"]) for _ in workdirs]
        verdicts = []
        for workdir in workdirs:
            if not files_in(workdir, ".tf"):
                verdicts.append(Verdict(self.name, "fail", [Finding("critical", "no .tf file in the answer")]))
                continue
            findings = [Finding(SEVERITY.get(f["severity"], "medium"), f["message"], f.get("file"), f.get("line"), f["rule"])
                        for f in results.get(str(workdir), [])]
            verdicts.append(verdict_from(self.name, findings, ("critical",), seconds=seconds))
        return verdicts
