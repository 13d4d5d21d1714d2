"""checkov on Terraform answers, offline, many answers in one call (~3 s a call however many).

checkov gives no severities offline, so each failed check is rated from `checkov_high.txt` (HIGH/CRITICAL
ids from the Prisma Cloud policy reference); a check not on that list is "unrated": shown, never gating.
A file checkov cannot parse makes that answer "unchecked" (with CKV_PARSE_ERROR_FAIL=TRUE), never clean.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from pathlib import Path

from .validator import Validator, files_in
from .verdict import Finding, Verdict, verdict_from

HIGH_LIST = Path(__file__).resolve().parent / "checkov_high.txt"


def load_severities(path: Path = HIGH_LIST) -> dict[str, str]:
    """check id -> "high" | "critical" from the committed list ("ID  SEVERITY  # comment" lines)."""
    ratings = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        body = line.split("#", 1)[0].split()
        if not body:
            continue
        if len(body) != 2 or body[1].upper() not in ("HIGH", "CRITICAL"):
            raise ValueError(f"{path.name}:{number}: expected 'CHECK_ID HIGH|CRITICAL', got {line.strip()!r}")
        ratings[body[0]] = body[1].lower()
    return ratings


def _reports(stdout: str) -> list[dict]:
    start = stdout.find("{") if stdout.lstrip().startswith("{") else stdout.find("[")
    doc = json.loads(stdout[start:]) if start >= 0 else {}
    return doc if isinstance(doc, list) else [doc]


class Checkov(Validator):
    name = "checkov"
    kinds = ("terraform",)

    def __init__(self, toolchain, severities: dict[str, str] | None = None):
        super().__init__(toolchain)
        self.severities = severities if severities is not None else load_severities()

    def version(self) -> str:
        return self.tc.version("checkov", [self.tc.bin("checkov"), "--version"])

    def check_many(self, workdirs: list[Path]) -> list[Verdict]:
        if not workdirs:
            return []
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="orch-checkov-") as tmp:
            batch = Path(tmp) / "batch"
            for i, workdir in enumerate(workdirs):
                shutil.copytree(workdir, batch / f"a{i}", ignore=shutil.ignore_patterns(".*"))
            done = self.tc.run([self.tc.bin("checkov"), "-d", batch, "--framework", "terraform", "--skip-download",
                                "-o", "json", "--compact", "--download-external-modules", "false"], timeout=900)
        seconds = (time.monotonic() - t0) / len(workdirs)
        try:
            reports = _reports(done.stdout)
        except ValueError:
            message = (done.stderr or done.stdout).strip()[-500:]
            return [Verdict(self.name, "unchecked", unchecked=[f"checkov failed (exit {done.returncode}): {message}"],
                            seconds=seconds) for _ in workdirs]
        findings = {i: [] for i in range(len(workdirs))}
        parse_errors = {i: [] for i in range(len(workdirs))}
        for report in reports:
            results = report.get("results") or {}
            for failed in results.get("failed_checks") or []:
                index, name = _owner(failed.get("file_path", ""))
                if index in findings:
                    findings[index].append(self._finding(failed, name))
            for path in results.get("parsing_errors") or []:
                index, name = _owner(str(path).split(str(batch), 1)[-1])
                if index in parse_errors:
                    parse_errors[index].append(name)
        return [self._verdict(findings[i], parse_errors[i], seconds, bool(files_in(w, ".tf")))
                for i, w in enumerate(workdirs)]

    def _finding(self, failed: dict, name: str) -> Finding:
        check = failed.get("check_id", "?")
        lines = failed.get("file_line_range") or [None]
        resource = failed.get("resource", "")
        return Finding(self.severities.get(check, "unrated"), f"{resource}: {failed.get('check_name', '')}".strip(": "),
                       name, lines[0], check)

    def _verdict(self, findings: list[Finding], parse_errors: list[str], seconds: float, has_tf: bool) -> Verdict:
        if parse_errors:
            return Verdict(self.name, "unchecked", findings, [f"checkov could not parse {', '.join(parse_errors)}"],
                           seconds)
        if not has_tf:
            return Verdict(self.name, "unchecked", unchecked=["no .tf file to scan"], seconds=seconds)
        return verdict_from(self.name, findings, ("critical", "high"), seconds=seconds)


def _owner(file_path: str) -> tuple[int, str]:
    """"/a3/main.tf" -> (3, "main.tf")."""
    match = re.match(r"/?a(\d+)/(.+)", file_path)
    return (int(match.group(1)), match.group(2)) if match else (-1, file_path)
