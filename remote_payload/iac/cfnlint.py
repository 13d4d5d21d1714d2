"""cfn-lint on CloudFormation answers, offline (its resource specs ship in the package), one call for all.

Gated with `--non-zero-exit-code error`: an answer passes when cfn-lint reports no Error; warnings and
informational findings are shown. Its JSON output names file, line, rule id and message.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from .validator import Validator, files_in
from .verdict import Finding, Verdict, verdict_from

LEVELS = {"Error": "high", "Warning": "medium", "Informational": "info"}
TEMPLATE_SUFFIXES = (".yaml", ".yml", ".json", ".template")


class CfnLint(Validator):
    name = "cfn-lint"
    kinds = ("cloudformation",)

    def version(self) -> str:
        return self.tc.version("cfn-lint", [self.tc.bin("cfn-lint"), "--version"])

    def check_many(self, workdirs: list[Path]) -> list[Verdict]:
        templates = {w: files_in(w, *TEMPLATE_SUFFIXES) for w in workdirs}
        every = [str(t) for paths in templates.values() for t in paths]
        if not every:
            return [Verdict(self.name, "fail", [Finding("critical", "no template file")]) for _ in workdirs]
        t0 = time.monotonic()
        done = self.tc.run([self.tc.bin("cfn-lint"), "--format", "json", "--non-zero-exit-code", "error",
                            "--", *every], timeout=900)
        seconds = (time.monotonic() - t0) / len(workdirs)
        try:
            matches = json.loads(done.stdout or "[]")
        except ValueError:
            message = (done.stderr or done.stdout).strip()[-500:]
            return [Verdict(self.name, "unchecked", unchecked=[f"cfn-lint failed (exit {done.returncode}): {message}"],
                            seconds=seconds) for _ in workdirs]
        by_file: dict[str, list[Finding]] = {}
        for match in matches:
            name = match.get("Filename", "")
            line = ((match.get("Location") or {}).get("Start") or {}).get("LineNumber")
            by_file.setdefault(str(Path(name).resolve()), []).append(Finding(
                LEVELS.get(match.get("Level"), "medium"), match.get("Message", "").strip(), Path(name).name, line,
                (match.get("Rule") or {}).get("Id")))
        verdicts = []
        for workdir, paths in templates.items():
            if not paths:
                verdicts.append(Verdict(self.name, "fail", [Finding("critical", "no template file")], seconds=seconds))
                continue
            found = [f for p in paths for f in by_file.get(str(p.resolve()), [])]
            verdicts.append(verdict_from(self.name, found, ("high",), seconds=seconds))
        return verdicts
