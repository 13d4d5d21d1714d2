"""`orch deploy`: put the bundle, a Python env with the payload's pins, and the weights on the instance.

Idempotent: the bundle is named by its content hash and the venv by the requirements' hash, so a second
deploy with nothing changed checks both in one round trip and sends no payload bytes.
"""

from __future__ import annotations

import posixpath
import time
from dataclasses import asdict, dataclass, field

from .bundle import PAYLOAD_DIR, Bundle, build_bundle
from .errors import CheckFailed, RemoteError
from .inventory import Instance, Job
from .transport.base import Transport

# The CUDA builds PyTorch publishes for torch 2.13 (stable: cu126, cu130) and the oldest Linux driver each
# needs: CUDA 13.x needs >= 580; 12.x runs on >= 525 through minor-version compatibility. A 570 driver
# (the user's g5 boxes) therefore gets cu126.
TORCH_CUDA_BUILDS = [(580, "cu130"), (525, "cu126")]
TORCH_INDEX = "https://download.pytorch.org/whl/{build}"


@dataclass
class RemoteLayout:
    """Where things live under the instance's work dir (see ARCHITECTURE.md)."""

    work_dir: str

    def bundle(self, bundle_id: str) -> str:
        return posixpath.join(self.work_dir, "bundles", bundle_id)

    def venv(self, requirements_hash: str) -> str:
        return posixpath.join(self.work_dir, "venvs", requirements_hash)

    @property
    def runs(self) -> str:
        return posixpath.join(self.work_dir, "runs")

    def run(self, run_id: str) -> str:
        return posixpath.join(self.runs, run_id)

    def lock(self, gpu: int) -> str:
        return posixpath.join(self.work_dir, "locks", f"gpu{gpu}.lock")


@dataclass
class DeployResult:
    instance: str
    job: str
    bundle_id: str
    bundle_dir: str
    python: str
    model_dir: str
    payload_bytes_sent: int = 0
    venv_created: bool = False
    weights: dict | None = None
    seconds: float = 0.0
    steps: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def torch_build_for_driver(driver_version: str | None) -> str | None:
    """The torch CUDA build an NVIDIA driver can run, or None without a GPU (CPU wheels)."""
    if not driver_version:
        return None
    try:
        major = int(driver_version.split(".")[0])
    except ValueError:
        raise CheckFailed(f"cannot read the NVIDIA driver version {driver_version!r}") from None
    for minimum, build in TORCH_CUDA_BUILDS:
        if major >= minimum:
            return build
    raise CheckFailed(f"NVIDIA driver {driver_version} is too old for torch 2.13 (needs >= 525)",
                      hint="upgrade the driver on the instance (e.g. a current Deep Learning AMI)")


def deploy(transport: Transport, instance: Instance, job: Job, *, s3=None, driver_version: str | None = None,
           sync_weights: bool = True, progress: bool = True, say=lambda msg: None) -> DeployResult:
    started = time.monotonic()
    layout = RemoteLayout(instance.work_dir)
    bundle = build_bundle(job)
    bundle_dir = layout.bundle(bundle.id)
    venv_dir = layout.venv(bundle.requirements_hash)
    python = posixpath.join(instance.python_env or venv_dir, "bin", "python")
    have_bundle, have_venv = _present(transport, bundle_dir, venv_dir if not instance.python_env else None)
    from .weights import local_weights_path

    result = DeployResult(instance.name, job.name, bundle.id, bundle_dir, python,
                          local_weights_path(instance, job))
    if have_bundle:
        result.steps.append(f"bundle {bundle.id} already on the instance")
    else:
        say(f"sending bundle {bundle.id} ({bundle.size / 1e6:.1f} MB)")
        result.payload_bytes_sent = _ship(transport, instance, bundle, bundle_dir)
        result.steps.append(f"bundle {bundle.id} sent ({bundle.size} bytes)")
    if instance.python_env:
        _check_env(transport, instance, python)
        result.steps.append(f"using the existing env {instance.python_env}")
    elif have_venv:
        result.steps.append(f"venv {bundle.requirements_hash} reused")
    else:
        say(f"creating the venv {venv_dir} (pip install of the payload's pins; minutes on first deploy)")
        _create_venv(transport, instance, bundle_dir, venv_dir, torch_build_for_driver(driver_version))
        result.venv_created = True
        result.steps.append(f"venv {bundle.requirements_hash} created")
    if sync_weights:
        from .weights import sync_weights as sync

        summary = sync(transport, instance, job, s3, python=python, cwd=bundle_dir, progress=progress)
        result.weights = summary if isinstance(summary, dict) else getattr(summary, "__dict__", summary)
        result.steps.append("weights in sync")
    result.seconds = round(time.monotonic() - started, 2)
    return result


def _present(transport: Transport, bundle_dir: str, venv_dir: str | None) -> tuple[bool, bool]:
    """One round trip: which of the bundle and the venv are already complete on the instance."""
    script = 'test -e "$1/.complete" && echo bundle; [ -n "$2" ] && test -e "$2/.complete" && echo venv; true'
    out = transport.run(["sh", "-c", script, "sh", bundle_dir, venv_dir or ""]).text.split()
    return "bundle" in out, "venv" in out


def _ship(transport: Transport, instance: Instance, bundle: Bundle, bundle_dir: str) -> int:
    unpack = (PAYLOAD_DIR / "unpack.py").read_text()
    proc = transport.open([instance.python, "-c", unpack, bundle_dir])
    view = memoryview(bundle.data)
    try:
        for start in range(0, len(view), 1 << 20):
            proc.write(bytes(view[start:start + (1 << 20)]))
        proc.close_stdin()
    except OSError as exc:
        raise RemoteError(f"{instance.name}: sending the bundle failed: {exc}; {proc.stderr_text()}") from exc
    code = proc.wait(300)
    if code != 0:
        raise RemoteError(f"{instance.name}: unpacking the bundle into {bundle_dir} failed: "
                          f"{proc.stderr_text().strip()[-500:]}")
    return len(bundle.data)


def _create_venv(transport: Transport, instance: Instance, bundle_dir: str, venv_dir: str,
                 torch_build: str | None) -> None:
    """Build the venv in place; `.complete` is written last, so a half-built one is rebuilt next time."""
    requirements = posixpath.join(bundle_dir, "remote_payload", "requirements.txt")
    index = ["--extra-index-url", TORCH_INDEX.format(build=torch_build)] if torch_build else []
    script = ('set -e; rm -rf "$0"; "$PY" -m venv "$0"; '
              '"$0/bin/python" -m pip install -q -r "$REQ" "$@"; touch "$0/.complete"')
    result = transport.run(["env", f"REQ={requirements}", f"PY={instance.python}", "sh", "-c", script,
                            venv_dir, *index], check=False, timeout=3600)
    if not result.ok:
        raise RemoteError(f"{instance.name}: creating the venv {venv_dir} failed:\n"
                          f"    {result.err_text.strip()[-800:]}",
                          hint="check the instance can reach PyPI, or set python_env: to an env "
                               "that already has remote_payload/requirements.txt installed")


def _check_env(transport: Transport, instance: Instance, python: str) -> None:
    check = ("import importlib.metadata as m, sys; "
             "print(' '.join(f'{p}=={m.version(p)}' for p in ('torch','transformers','peft','bitsandbytes')))")
    result = transport.run([python, "-c", check], check=False)
    if not result.ok:
        raise CheckFailed(f"{instance.name}: python_env {instance.python_env} cannot run the payload: "
                          f"{result.err_text.strip()[-300:]}",
                          hint="install remote_payload/requirements.txt into it, or remove python_env: "
                               "so that orch builds its own venv")
