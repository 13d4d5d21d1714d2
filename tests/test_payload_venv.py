"""The venv an instance gets is built here from `remote_payload/requirements.txt` by the code deploy runs, so a
broken pin (or an index that cannot serve it) fails in this suite, not on a user's first deploy."""

from __future__ import annotations

import json
import subprocess

from tests.conftest import ROOT


def pins() -> dict[str, str]:
    lines = (ROOT / "remote_payload" / "requirements.txt").read_text().splitlines()
    return dict(line.strip().split("==") for line in lines if "==" in line and not line.startswith("#"))


def test_the_instances_venv_builds_from_the_pinned_requirements_and_holds_exactly_those_versions(
        pinned_venv):
    python = pinned_venv / "bin" / "python"
    found = subprocess.run([str(python), "-m", "remote_payload.envcheck", *pins()], cwd=ROOT, capture_output=True,
                           text=True, timeout=120)
    assert found.returncode == 0, found.stderr
    versions = json.loads(found.stdout)
    assert {name: versions[name].split("+")[0] for name in pins()} == pins()


def test_the_payload_imports_and_its_commands_start_in_that_venv(pinned_venv):
    python = str(pinned_venv / "bin" / "python")
    for module in ("train", "evaluate", "s3sync", "seqlen"):
        run = subprocess.run([python, "-m", f"remote_payload.{module}", "--help"], cwd=ROOT, capture_output=True,
                             text=True, timeout=300)
        assert run.returncode == 0, f"{module}: {run.stderr[-2000:]}"
    imports = subprocess.run([python, "-c", "import torch, transformers, peft, bitsandbytes, accelerate, boto3"],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert imports.returncode == 0, imports.stderr[-2000:]
