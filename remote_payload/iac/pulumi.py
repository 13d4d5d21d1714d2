"""Pulumi (Python) programs: what can be checked without the Pulumi engine and provider SDKs.

The program is parsed, never run: Python syntax, that it imports pulumi, and names used but bound nowhere
(a pyflakes-style check). Resource types and their arguments are NOT checked: that needs `pulumi` plus
provider packages (pulumi-aws alone is ~270 MB, and pulumi needs packaging>=24 where checkov pins <24), so it
is reported as not checked on every answer. Seed 001 sets no gate for Pulumi.
"""

from __future__ import annotations

import ast
import builtins
import platform
import time
from pathlib import Path

from .validator import Validator, files_in
from .verdict import Finding, Verdict, verdict_from

NOT_CHECKED = "Pulumi: syntax, imports and names only; resource types and arguments not checked (no Pulumi " \
              "engine or provider SDKs offline)"


def _bound_names(tree: ast.AST) -> set[str]:
    bound = set(dir(builtins)) | {"__name__", "__file__"}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
            if not isinstance(node, ast.ClassDef):
                args = node.args
                bound.update(a.arg for a in args.posonlyargs + args.args + args.kwonlyargs)
                bound.update(a.arg for a in (args.vararg, args.kwarg) if a)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            bound.add(node.id)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            bound.update(node.names)
        elif isinstance(node, ast.alias) and node.name == "*":
            bound.add("*")
    return bound


def check_source(text: str, name: str) -> list[Finding]:
    try:
        tree = ast.parse(text, filename=name)
    except SyntaxError as exc:
        return [Finding("critical", f"Python syntax error: {exc.msg}", name, exc.lineno)]
    findings = []
    imports = {a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    imports |= {(node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    if "pulumi" not in imports:
        findings.append(Finding("high", "not a Pulumi program: it never imports pulumi", name))
    bound = _bound_names(tree)
    if "*" not in bound:
        seen = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in bound \
                    and node.id not in seen:
                seen.add(node.id)
                findings.append(Finding("high", f"undefined name {node.id!r}", name, node.lineno))
    return findings


class PulumiCheck(Validator):
    name = "pulumi (python ast)"
    kinds = ("pulumi",)

    def version(self) -> str:
        return f"orch ast checks, Python {platform.python_version()}"

    def check(self, workdir: Path) -> Verdict:
        t0 = time.monotonic()
        sources = files_in(workdir, ".py")
        if not sources:
            return Verdict(self.name, "fail", [Finding("critical", "no Python file in the answer")])
        findings = [f for path in sources for f in check_source(path.read_text(), path.name)]
        return verdict_from(self.name, findings, ("critical", "high"), [NOT_CHECKED], time.monotonic() - t0)
