"""`orch deploy`: put the payload, the job's inputs, a Python env with the payload's pins, and the weights on
the instance.

Idempotent: the payload and the inputs are named by their content's hash and the venv by the requirements'
hash, so a second deploy with nothing changed costs one round trip and sends no payload bytes. Deploys of one
instance serialise on its deploy lock (unpack, venv build and weights sync each take it), and a folder is
trusted only once it verifies against its own file list -- see remote_payload/install.py.
"""

from __future__ import annotations

import posixpath
import time
from dataclasses import asdict, dataclass, field

from .bundle import build_job_inputs, requirements_hash
from .errors import CheckFailed
from .inventory import Instance, Job
from .layout import payload_python
from .remote import Remote
from .transport.base import Transport

# The CUDA builds PyTorch publishes for torch 2.13 (stable: cu126, cu130) and the oldest Linux driver each
# needs: CUDA 13.x needs >= 580; 12.x runs on >= 525 through minor-version compatibility. A 570 driver
# (the user's g5 boxes) therefore gets cu126.
TORCH_CUDA_BUILDS = [(580, "cu130"), (525, "cu126")]
TORCH_INDEX = "https://download.pytorch.org/whl/{build}"


@dataclass
class DeployResult:
    instance: str
    job: str
    bundle_id: str              # the payload's id
    bundle_dir: str             # the payload folder: tools and `python -m remote_payload.*` run from here
    job_dir: str                # the job's inputs (job.json, data/)
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
    remote = Remote(transport, instance)
    inputs = build_job_inputs(job)
    payload_dir, job_dir = remote.payload_dir, remote.layout.job(inputs.id)
    req = requirements_hash()
    python = payload_python(instance, req)
    from .weights import local_weights_path

    result = DeployResult(instance.name, job.name, remote.payload.id, payload_dir, job_dir, python,
                          local_weights_path(instance, job))
    venv = None if instance.python_env else remote.layout.venv(req)
    torch_build = torch_build_for_driver(driver_version) if venv else None
    pip_args = ["--extra-index-url", TORCH_INDEX.format(build=torch_build)] if torch_build else []
    installed = remote.install({"payload": (payload_dir, remote.payload), "job": (job_dir, inputs)},
                               venv=venv, requirements=posixpath.join(payload_dir, "remote_payload", "requirements.txt"),
                               pip_args=pip_args, check_env=python if instance.python_env else None,
                               holder={"job": job.name, "what": "deploy"}, say=say)
    result.payload_bytes_sent = installed.bytes_sent
    for name, archive_id in (("payload", remote.payload.id), ("job", inputs.id)):
        if name in installed.broken:
            result.steps.append(f"{name} {archive_id} did not verify ({installed.broken[name]}): rebuilt")
        if name in installed.sent:
            result.steps.append(f"{name} {archive_id} sent ({installed.sent[name]} bytes)")
        else:
            result.steps.append(f"{name} {archive_id} already on the instance")
    if installed.waited_s > 1:
        result.steps.append(f"waited {installed.waited_s:.0f} s for another deploy")
    if instance.python_env:
        result.steps.append(f"using the existing env {instance.python_env}")
    else:
        result.venv_created = installed.venv == "built"
        result.steps.append(f"venv {req} {'created' if result.venv_created else 'reused'}")
    if sync_weights:
        from .weights import sync_weights as sync

        result.weights = sync(transport, instance, job, s3, python=python, cwd=payload_dir, progress=progress,
                              lock=remote.layout.deploy_lock)
        result.steps.append("weights in sync")
    result.seconds = round(time.monotonic() - started, 2)
    return result
