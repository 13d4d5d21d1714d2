"""Where things live on an instance, under its `work_dir` (see ARCHITECTURE.md). The one place these paths,
and the interpreter a run uses, are computed.

    payload/<payload id>/remote_payload/   the payload code (content-addressed; tools run from here)
    jobs/<inputs id>/job.json, data/...     a job's inputs (content-addressed)
    plans/<plan id>/plan.json               the plan `orch train` made for a run (content-addressed)
    venvs/<requirements sha>/              the training venv, unless the instance names a `python_env`
    runs/<run id>/                         one training run
    runs/<run id>/exports/<label>/          its exports (`orch export`: lora, merged, merged-w4a16)
    venvs/serve-<device>-<sha>/, venvs/quantize-<device>-<sha>/   the serving / quantizing venvs
    serve/                                 what `orch serve` started (serve.json, logs; one model at a time)
    locks/deploy.lock                      held while a deploy changes the instance
    locks/gpu<N>.lock                      held by a run for its lifetime
    sweeps/<sweep name>/<point>.json        a sweep point's claim (on the sweep's home instance: sweepclaim.py)
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass


@dataclass(frozen=True)
class Layout:
    work_dir: str

    def payload(self, payload_id: str) -> str:
        return posixpath.join(self.work_dir, "payload", payload_id)

    def job(self, inputs_id: str) -> str:
        return posixpath.join(self.work_dir, "jobs", inputs_id)

    def plan(self, plan_id: str) -> str:
        return posixpath.join(self.work_dir, "plans", plan_id)

    def venv(self, requirements_hash: str) -> str:
        return posixpath.join(self.work_dir, "venvs", requirements_hash)

    @property
    def runs(self) -> str:
        return posixpath.join(self.work_dir, "runs")

    def run(self, run_id: str) -> str:
        return posixpath.join(self.runs, run_id)

    def export(self, run_dir: str, label: str) -> str:
        return posixpath.join(run_dir, "exports", label)

    @property
    def tool_venvs(self) -> str:
        """Root of the serving and quantizing venvs (remote_payload/venvs.py names them inside it)."""
        return posixpath.join(self.work_dir, "venvs")

    @property
    def serve_dir(self) -> str:
        return posixpath.join(self.work_dir, "serve")

    @property
    def deploy_lock(self) -> str:
        return posixpath.join(self.work_dir, "locks", "deploy.lock")

    def gpu_lock(self, gpu: int) -> str:
        return posixpath.join(self.work_dir, "locks", f"gpu{gpu}.lock")

    def sweep(self, name: str) -> str:
        return posixpath.join(self.work_dir, "sweeps", name)


def layout_of(instance) -> Layout:
    return Layout(instance.work_dir)


def payload_python(instance, requirements_hash: str) -> str:
    """The interpreter of the payload's env: the instance's `python_env`, else the venv deploy builds."""
    env = instance.python_env or layout_of(instance).venv(requirements_hash)
    return posixpath.join(env, "bin", "python")
