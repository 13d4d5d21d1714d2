"""Stages: the parent a stage-2 job continues from (`init_from:` in the inventory), found on the instance.

`init_from` may name
* a job: its latest succeeded run (state "finished" with an adapter) on the same instance;
* a run id (`<job>-<YYYYmmdd>-<HHMMSS>-<hex>`): that run, which must have finished with an adapter;
* an `s3://bucket/prefix/adapter/` folder (e.g. one `orch fetch-adapter --upload` archived): the instance
  fetches it itself with the payload's s3sync into `work_dir/parents/<sha256(uri)[:16]>/`.
The run gets `--init-adapter <that folder> --parent {"run_id", "job", "source"}`; the payload checks the
adapter against its manifest and records it (remote_payload/stages.py).
"""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import asdict, dataclass

from .errors import CheckFailed, InputError
from .inventory import Instance, Inventory, Job
from .runs import list_runs


@dataclass(frozen=True)
class Parent:
    source: str              # what init_from said
    adapter_dir: str         # on the instance
    run_id: str | None = None
    job: str | None = None

    def to_json(self) -> dict:
        return asdict(self)

    def payload_arg(self) -> dict:
        return {"run_id": self.run_id, "job": self.job, "source": self.source}


def _finished(runs: list[dict]) -> list[dict]:
    return [r for r in runs if r.get("state") == "finished" and r.get("has_adapter")]


def parent_from_job(transport, instance: Instance, inventory: Inventory, job: Job) -> Parent:
    other = inventory.job(job.init_from)
    if other.instance != job.instance:
        raise InputError(f"job {job.name}: init_from job {other.name} is bound to instance {other.instance}, "
                         f"not {job.instance}",
                         hint=f"archive its adapter (`orch fetch-adapter {other.name} --upload s3://.../`) and set "
                              f"init_from to that s3:// folder")
    runs = _finished(list_runs(transport, instance, job=other.name))
    if not runs:
        raise CheckFailed(f"{instance.name}: job {other.name} has no succeeded run to continue from",
                          hint=f"train stage 1 first: `orch train {other.name}`")
    run = runs[-1]
    return Parent(job.init_from, posixpath.join(run["run_dir"], "adapter"), run["run_id"], other.name)


def parent_from_run(transport, instance: Instance, job: Job) -> Parent:
    runs = list_runs(transport, instance, run_id=job.init_from)
    if not runs:
        raise InputError(f"job {job.name}: init_from run {job.init_from} is not on {instance.name}",
                         hint=f"`orch status --instance {instance.name}` lists its runs")
    if not _finished(runs):
        raise CheckFailed(f"{instance.name}: run {job.init_from} is {runs[-1].get('state')}, not finished with "
                          f"an adapter", hint="continue from a run that succeeded")
    run = runs[-1]
    return Parent(job.init_from, posixpath.join(run["run_dir"], "adapter"), run["run_id"], run.get("job"))


def parent_from_s3(transport, instance: Instance, job: Job, s3, *, python: str, payload_dir: str,
                   progress: bool, say) -> Parent:
    from .weights import sync_weights

    uri = job.init_from if job.init_from.endswith("/") else job.init_from + "/"
    dest = posixpath.join(instance.work_dir, "parents", hashlib.sha256(uri.encode()).hexdigest()[:16], "adapter")
    sync_weights(transport, instance, job, s3, python=python, cwd=payload_dir, progress=progress, say=say,
                 source=uri, dest=dest)
    return Parent(job.init_from, dest)


def resolve_parent(transport, instance: Instance, inventory: Inventory, job: Job, s3, *, python: str,
                   payload_dir: str, progress: bool = True, say=lambda message: None) -> Parent | None:
    """The parent of a stage-2 job on `instance` (None when the job has no init_from)."""
    source = job.init_from
    if not source:
        return None
    if source.startswith("s3://"):
        return parent_from_s3(transport, instance, job, s3, python=python, payload_dir=payload_dir,
                              progress=progress, say=say)
    if source in inventory.job_names:
        return parent_from_job(transport, instance, inventory, job)
    if source.count("-") >= 3:
        return parent_from_run(transport, instance, job)
    raise InputError(f"job {job.name}: init_from {source!r} is neither a job, a run id nor an s3:// folder",
                     hint=f"known jobs: {', '.join(inventory.job_names)}")
