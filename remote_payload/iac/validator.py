"""The shape every validator has: a name, the tool's version, `check(workdir) -> Verdict`.

A workdir holds one answer's files for one kind. `check_many` exists so that tools with a slow start
(checkov, cfn-lint, kubernetes-validate, the Python runners) scan many answers in one call.
"""

from __future__ import annotations

from pathlib import Path

from .toolchain import Toolchain
from .verdict import Verdict


class Validator:
    name = "validator"
    kinds: tuple[str, ...] = ()

    def __init__(self, toolchain: Toolchain):
        self.tc = toolchain

    def version(self) -> str:
        raise NotImplementedError

    def check(self, workdir: Path) -> Verdict:
        return self.check_many([workdir])[0]

    def check_many(self, workdirs: list[Path]) -> list[Verdict]:
        return [self.check(w) for w in workdirs]


def files_in(workdir: Path, *suffixes: str) -> list[Path]:
    """The answer's files with these suffixes, relative order fixed; tool state folders (.terraform) left out."""
    return sorted(p for p in workdir.rglob("*") if p.is_file() and p.suffix in suffixes
                  and not any(part.startswith(".") for part in p.relative_to(workdir).parts))
