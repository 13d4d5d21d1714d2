"""`terraform fmt -check` and `terraform init -backend=false && terraform validate`, offline.

Each check runs in a private copy of the answer with its own CLI config: providers come only from the
validators venv's filesystem mirror (hashicorp/aws 3.39.0), never from a registry. What that cannot cover is
reported, never passed silently:
* a config that needs a provider outside the mirror (google, azurerm, random, ...) gets no validate at all
  ("GCP: syntax and structure only, no provider"); terraform fmt and orch-hcl-lint still check it;
* a resource type the 3.39.0 provider does not know (aws_s3_bucket_versioning, ...) is listed as not checked;
* an answer pinned to a newer provider (`version = "~> 5.0"`) or Terraform is validated against 3.39.0 through
  an override file; then errors that may only mean "newer than 3.39.0" (unknown argument or block inside an aws
  resource) are listed as not checked, while every other error (syntax, undeclared reference, types) counts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from .toolchain import MIRRORED_PROVIDERS
from .validator import Validator, files_in
from .verdict import Finding, Verdict, verdict_from

HOSTS = ("registry.terraform.io/", "registry.opentofu.org/")
CLOUD_NAMES = {"hashicorp/google": "GCP", "hashicorp/google-beta": "GCP", "hashicorp/azurerm": "Azure",
               "hashicorp/azuread": "Azure AD"}
UNKNOWN_TYPE = ("Invalid resource type", "Invalid data source")
# Errors that can mean only "this argument or block is newer than the offline provider".
VERSION_SENSITIVE = ("Unsupported argument", "Unsupported block type", "Missing required argument",
                     "Too many ", "Insufficient ", "Conflicting configuration arguments", "Invalid or unknown key")

CLI_CONFIG = """provider_installation {{
  filesystem_mirror {{
    path    = "{mirror}"
    include = ["registry.terraform.io/hashicorp/*", "registry.opentofu.org/hashicorp/*"]
  }}
  direct {{
    exclude = ["registry.terraform.io/*/*", "registry.opentofu.org/*/*"]
  }}
}}
"""
OVERRIDE = "zz_orch_offline_override.tf"
MODULES_OFFLINE = "modules from a registry or a git URL cannot be downloaded offline: terraform validate not run"


class TerraformTool(Validator):
    kinds = ("terraform",)

    def version(self) -> str:
        if self.tc.terraform is None:
            return "not installed"
        parse = lambda out: "{} ({})".format(
            json.loads(out).get("terraform_version", "?"), self.tc.terraform_origin)
        return self.tc.version("terraform", [self.tc.terraform, "version", "-json"], parse)

    def _missing_binary(self) -> Verdict:
        return Verdict(self.name, "unchecked", unchecked=[
            "no terraform binary (none on PATH, none in the validators venv): run `orch validators install`"])


def text_diagnostics(text: str, severity: str = "critical") -> list[Finding]:
    """Terraform's human-readable "Error: ..." blocks as findings with file:line when it names one."""
    findings = []
    for block in re.split(r"\n(?=(?:Error|Warning): )", "\n" + text):
        match = re.match(r"(Error|Warning): (.+)", block.strip())
        if not match:
            continue
        where = re.search(r"on (\S+) line (\d+)", block)
        detail = [ln.strip() for ln in block.split("\n\n", 2)[-1].splitlines() if ln.strip()] \
            if block.count("\n\n") >= 2 else []
        message = match.group(2).strip() + (f": {' '.join(detail)}" if detail else "")
        findings.append(Finding(severity if match.group(1) == "Error" else "low", message,
                                where.group(1) if where else None, int(where.group(2)) if where else None))
    return findings


def _module_download_failed(text: str) -> bool:
    lower = text.lower().replace("initializing modules", "")
    return bool(re.search(r"(download|retrieve|install|query)[^\n]*module|module[^\n]*(download|not installed|"
                          r"registry|source)", lower))


class TerraformFmt(TerraformTool):
    """`terraform fmt -check`: the file parses and is in canonical format (reported, not one of seed 001's gates)."""

    name = "terraform fmt"

    def check(self, workdir: Path) -> Verdict:
        if self.tc.terraform is None:
            return self._missing_binary()
        t0 = time.monotonic()
        done = self.tc.run([self.tc.terraform, "fmt", "-check", "-list=true", "-no-color", "-recursive"],
                           cwd=workdir, env={"TF_CLI_CONFIG_FILE": os.devnull}, timeout=120)
        findings = [f for f in text_diagnostics(done.stderr) if f.severity == "critical"] if done.returncode else []
        if done.returncode != 0 and not findings:
            findings = [Finding("low", "not in canonical format (`terraform fmt` would rewrite it)", name)
                        for name in done.stdout.split()]
        if done.returncode != 0 and not findings:
            findings = [Finding("critical", (done.stderr or done.stdout).strip() or f"exit {done.returncode}")]
        return verdict_from(self.name, findings, ("critical", "low"), seconds=time.monotonic() - t0)


class TerraformValidate(TerraformTool):
    """`terraform init -backend=false && terraform validate` against the offline provider mirror."""

    name = "terraform validate"

    def check(self, workdir: Path) -> Verdict:
        if self.tc.terraform is None:
            return self._missing_binary()
        if not files_in(workdir, ".tf"):
            return Verdict(self.name, "fail", [Finding("critical", "no .tf file in the answer")])
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="orch-tf-") as tmp:
            work = Path(tmp) / "config"
            shutil.copytree(workdir, work, ignore=shutil.ignore_patterns(".terraform*"))
            rc = Path(tmp) / "terraformrc"
            rc.write_text(CLI_CONFIG.format(mirror=self.tc.mirror))
            env = {"TF_CLI_CONFIG_FILE": str(rc), "TF_DATA_DIR": str(Path(tmp) / "data"),
                   "TF_PLUGIN_CACHE_DIR": ""}
            verdict = self._check_copy(work, env)
        verdict.seconds = time.monotonic() - t0
        return verdict

    def _tf(self, work: Path, env: dict, *args: str):
        return self.tc.run([self.tc.terraform, *args, "-no-color"], cwd=work, env=env, timeout=300)

    def _providers(self, work: Path, env: dict) -> tuple[dict[str, str], list[Finding]]:
        done = self._tf(work, env, "providers")
        if done.returncode != 0:
            return {}, text_diagnostics(done.stderr + done.stdout) or [Finding("critical", done.stderr.strip())]
        found = {}
        for address, constraint in re.findall(r"provider\[([^\]]+)\]\s*([^\n]*)", done.stdout):
            for host in HOSTS:
                address = address.removeprefix(host)
            found[address] = constraint.strip()
        return found, []

    def _check_copy(self, work: Path, env: dict) -> Verdict:
        providers, errors = self._providers(work, env)
        if errors and any(f.message.startswith("Module not installed") for f in errors):
            # `terraform providers` needs the modules: init installs local ones; remote ones cannot come offline
            init = self._tf(work, env, "init", "-backend=false", "-input=false")
            if init.returncode != 0 and _module_download_failed(init.stderr + init.stdout):
                return Verdict(self.name, "unchecked", unchecked=[MODULES_OFFLINE])
            providers, errors = self._providers(work, env)
        if errors:
            return Verdict(self.name, "fail", errors)
        missing = sorted(p for p in providers if p not in MIRRORED_PROVIDERS)
        if missing:
            clouds = sorted({CLOUD_NAMES.get(p, p) for p in missing})
            return Verdict(self.name, "unchecked", unchecked=[
                f"{', '.join(clouds)}: syntax and structure only, no provider offline ({', '.join(missing)} "
                f"not in the offline mirror, which holds only hashicorp/aws {MIRRORED_PROVIDERS['hashicorp/aws']})"])
        if not self.tc.has_mirror():
            return Verdict(self.name, "unchecked", unchecked=[
                "no offline provider mirror in the validators venv (no aws provider build for this platform)"])
        relaxed, init = self._init(work, env, providers)
        if init.returncode != 0:
            text = init.stderr + init.stdout
            if _module_download_failed(text):
                return Verdict(self.name, "unchecked", unchecked=[MODULES_OFFLINE])
            return Verdict(self.name, "fail", text_diagnostics(text) or [Finding("critical", text.strip())])
        done = self._tf(work, env, "validate", "-json")
        return self._verdict(done.stdout, relaxed)

    def _init(self, work: Path, env: dict, providers: dict[str, str]):
        args = ("init", "-backend=false", "-input=false")
        init = self._tf(work, env, *args)
        text = init.stderr + init.stdout
        relaxed = []
        if init.returncode != 0 and "Unsupported Terraform Core version" in text:
            relaxed.append("core")
        if init.returncode != 0 and "no available releases match" in text:
            relaxed.append("provider")
        if not relaxed:
            return {}, init
        aws = providers.get("hashicorp/aws", "")
        override = ["terraform {"]
        if "core" in relaxed:
            override.append('  required_version = ">= 0.12"')
        if "provider" in relaxed:
            override += ["  required_providers {", "    aws = {", '      source  = "hashicorp/aws"',
                         f'      version = "{MIRRORED_PROVIDERS["hashicorp/aws"]}"', "    }", "  }"]
        (work / OVERRIDE).write_text("\n".join(override + ["}", ""]))
        return {"core": "core" in relaxed, "aws": aws if "provider" in relaxed else ""}, self._tf(work, env, *args)

    def _verdict(self, stdout: str, relaxed: dict) -> Verdict:
        try:
            diagnostics = json.loads(stdout).get("diagnostics", [])
        except ValueError:
            return Verdict(self.name, "fail", [Finding("critical", f"terraform validate printed no JSON: {stdout[:300]}")])
        findings, unchecked = [], []
        mirrored = MIRRORED_PROVIDERS["hashicorp/aws"]
        if relaxed.get("aws"):
            unchecked.append(f"the answer asks for hashicorp/aws {relaxed['aws']}; it was validated against "
                             f"{mirrored} (the offline mirror): arguments newer than that are not checked")
        if relaxed.get("core"):
            unchecked.append("the answer's required_version excludes this terraform; it was validated anyway, so "
                             "language features newer than this terraform may show as errors")
        for diag in diagnostics:
            summary, detail = diag.get("summary", ""), diag.get("detail", "")
            start = (diag.get("range") or {}).get("start", {})
            file, line = (diag.get("range") or {}).get("filename"), start.get("line")
            context = (diag.get("snippet") or {}).get("context") or ""
            aws_block = bool(re.match(r'(resource|data|provider) "aws', context))
            if summary in UNKNOWN_TYPE and "hashicorp/aws" in detail:
                kind = re.search(r'"([^"]+)"', detail)
                unchecked.append(f"{kind.group(1) if kind else summary}: unknown to hashicorp/aws {mirrored} "
                                 "(newer than the offline provider, or not a real type): not checked")
            elif relaxed.get("aws") and aws_block and summary.startswith(VERSION_SENSITIVE):
                unchecked.append(f"{file}:{line}: {summary} ({detail}) - may only be newer than aws {mirrored}")
            else:
                severity = "critical" if diag.get("severity") == "error" else "low"
                findings.append(Finding(severity, f"{summary}: {detail}" if detail else summary, file, line))
        return verdict_from(self.name, findings, ("critical",), unchecked)
