"""Kubernetes manifests against the API's JSON schemas, offline and strict (kubernetes-validate --strict).

Schemas for Kubernetes 1.25-1.37 ship in the package. Strict mode rejects unknown fields (a misspelt
`imagePullPolcy`); a kind with no schema (a CRD such as cert-manager's Certificate) is listed as not checked,
like kubeconform's -ignore-missing-schemas, and is never counted as a pass on its own. kubeconform is not used:
it is not installable from PyPI and fetches its schemas from the network.
kubernetes-validate stops its whole run at a file that is not YAML, so such a file is failed and the run
repeated without it.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from .validator import Validator, files_in
from .verdict import Finding, Verdict

PREFIXES = ("INFO ", "ERROR ", "WARN ", "FATAL ")


def _records(stdout: str) -> list[str]:
    records: list[str] = []
    for line in stdout.splitlines():
        if line.startswith(PREFIXES) or not records:
            records.append(line)
        else:
            records[-1] += " " + line.strip()
    return records


class KubernetesValidate(Validator):
    name = "kubernetes-validate"
    kinds = ("kubernetes", "helm")

    def __init__(self, toolchain, kubernetes_version: str | None = None):
        super().__init__(toolchain)
        self.kubernetes_version = kubernetes_version

    def version(self) -> str:
        tool = self.tc.version("kubernetes-validate", [self.tc.bin("kubernetes-validate"), "--version"])
        return f"{tool} (--strict, Kubernetes {self.kubernetes_version or 'schemas of its own version'})"

    def _run(self, files: list[Path]) -> tuple[list[str], dict[str, str]]:
        """Output records for all files, and the files that are not YAML (with the parser's message)."""
        not_yaml: dict[str, str] = {}
        pending = list(files)
        while pending:
            argv = [self.tc.bin("kubernetes-validate"), "--strict"]
            if self.kubernetes_version:
                argv += ["-k", self.kubernetes_version]
            done = self.tc.run(argv + [str(p) for p in pending], timeout=600)
            bad = re.search(r"Couldn't parse YAML from file (\S+?): (.*)", done.stderr, flags=re.DOTALL)
            if not bad:
                return _records(done.stdout), not_yaml
            lines = [ln.strip() for ln in bad.group(2).splitlines() if ln.strip()]
            not_yaml[bad.group(1)] = " ".join(lines[:1] + lines[3:4])
            pending = [p for p in pending if str(p) != bad.group(1)]
        return [], not_yaml

    def check_many(self, workdirs: list[Path]) -> list[Verdict]:
        manifests = {w: files_in(w, ".yaml", ".yml", ".json") for w in workdirs}
        every = [p for paths in manifests.values() for p in paths]
        t0 = time.monotonic()
        records, not_yaml = self._run(every) if every else ([], {})
        seconds = (time.monotonic() - t0) / max(len(workdirs), 1)
        return [self._verdict(workdir, paths, records, not_yaml, seconds) for workdir, paths in manifests.items()]

    def _verdict(self, workdir: Path, paths: list[Path], records: list[str], not_yaml: dict[str, str],
                 seconds: float) -> Verdict:
        findings, unchecked, passed = [], [], 0
        for path in paths:
            name = str(path.relative_to(workdir))
            if str(path) in not_yaml:
                findings.append(Finding("critical", f"not valid YAML: {not_yaml[str(path)]}", name))
                continue
            for record in (r for r in records if r.split(" ", 2)[1:2] == [str(path)]):
                level, _, rest = record.partition(" ")
                rest = rest[len(str(path)):].strip()
                if level == "INFO":
                    passed += 1
                elif level == "WARN":
                    unchecked.append(f"{name}: {rest} - not checked")
                else:
                    match = re.match(r"did not validate for resource (\S+) against version [\d.]+: (.*)", rest)
                    missing = re.match(r"could not be validated: '(\w+)'$", rest)
                    message = f"{match.group(1)}: {match.group(2)}" if match else \
                        f"missing required field {missing.group(1)!r}" if missing else rest
                    findings.append(Finding("high", message, name))
        if findings:
            return Verdict(self.name, "fail", findings, unchecked, seconds)
        if not paths or (not passed and not unchecked):
            return Verdict(self.name, "fail", [Finding("critical", "no Kubernetes resources found")], unchecked, seconds)
        return Verdict(self.name, "pass" if passed else "unchecked", [], unchecked, seconds)
