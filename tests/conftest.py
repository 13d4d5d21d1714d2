"""Shared test plumbing: a loopback-only network safety net and a way to run the real `orch` CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Nothing a test runs may reach a real cloud host: IMDS and AWS default to closed loopback ports,
# and credentials are dummies. Tests that start a server point these at it explicitly.
SAFE_ENV = {
    "ORCH_IMDS_URL": "http://127.0.0.1:9",
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}
for _k, _v in SAFE_ENV.items():
    os.environ[_k] = _v
os.environ.pop("ORCH_INVENTORY", None)
os.environ.pop("ORCH_ENV_FILE", None)
os.environ.pop("AWS_PROFILE", None)


@dataclass
class OrchRun:
    code: int
    stdout: str
    stderr: str

    def json(self):
        import json

        return json.loads(self.stdout)


def orch(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 300,
         input: str | None = None) -> OrchRun:
    """Run the real CLI (`python -m orchestrator`) in a subprocess, as a user would."""
    p = subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=cwd or ROOT,
                       env={**os.environ, **(env or {})}, capture_output=True, text=True,
                       timeout=timeout, input=input)
    return OrchRun(p.returncode, p.stdout, p.stderr)


def kill_run(run_dir: Path) -> None:
    """Kill a run's supervisor and its training at once, as a crash or the OOM killer would."""
    import signal

    os.killpg(int((run_dir / "child_pid").read_text()), signal.SIGKILL)
    os.kill(int((run_dir / "pid").read_text()), signal.SIGKILL)


@pytest.fixture
def project(tmp_path):
    """A scratch project folder: write an inventory and a .env into it, run orch there."""

    class Project:
        root = tmp_path

        def write(self, name: str, text: str) -> Path:
            path = tmp_path / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text))
            return path

        def orch(self, *args: str, **kw) -> OrchRun:
            return orch(*args, cwd=tmp_path, **kw)

    return Project()
