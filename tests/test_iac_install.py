"""The validators venv installer: cached by the requirements hash, safe against two installers at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from remote_payload.iac.install import install
from remote_payload.iac.toolchain import MARKER, ValidatorsMissing, find_toolchain, requirements_hash
from tests.fixtures.validators import ROOT


@pytest.fixture
def tiny_requirements(tmp_path):
    """A requirements file with no packages: the installer's own logic, without a 1 GB download."""
    path = tmp_path / "requirements.txt"
    path.write_text("# nothing to install: exercises venv creation, the lock and the marker\n")
    return path


def test_two_installers_at_once_build_the_venv_once(tmp_path, tiny_requirements):
    argv = [sys.executable, "-m", "remote_payload.iac.install", "--root", str(tmp_path / "cache"),
            "--requirements", str(tiny_requirements), "--json"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    results = [json.loads(out) for out, _ in outputs]
    assert sorted(r["status"] for r in results) == ["cached", "installed"]
    venv = tmp_path / "cache" / requirements_hash(tiny_requirements)
    assert results[0]["venv"] == results[1]["venv"] == str(venv)
    assert json.loads((venv / MARKER).read_text())["requirements_sha256"] == requirements_hash(tiny_requirements)
    assert sum("creating the validators venv" in err for _, err in outputs) == 1   # built once, reused once


def test_a_venv_without_its_marker_is_rebuilt_not_trusted(tmp_path, tiny_requirements):
    venv = tmp_path / "cache" / requirements_hash(tiny_requirements)
    (venv / "bin").mkdir(parents=True)
    (venv / "half-written").write_text("an interrupted install left this")
    with pytest.raises(ValidatorsMissing, match="not installed"):
        find_toolchain(venv)
    result = install(root=tmp_path / "cache", requirements=tiny_requirements, say=lambda m: None)
    assert result["status"] == "installed" and not (venv / "half-written").exists()
    assert (venv / "bin" / "python").exists() and (venv / MARKER).is_file()


def test_the_session_venv_is_reused_while_the_requirements_are_unchanged(validators_venv):
    result = install(root=validators_venv.parent, say=lambda m: None)
    assert result["status"] == "cached" and result["venv"] == str(validators_venv)
    assert result["size_bytes"] > 300e6 and (validators_venv / "terraform-mirror" / "registry.opentofu.org").is_dir()


def test_missing_validators_say_how_to_install_them(tmp_path):
    with pytest.raises(ValidatorsMissing) as info:
        find_toolchain(tmp_path / "nothing")
    assert "orch validators install" in info.value.hint and info.value.exit_code == 2
