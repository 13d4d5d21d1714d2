"""Start one run of a job on one instance: preflight, deploy, a stage-2 parent, plan, pick the GPUs, start it
detached.

What `orch train` does per instance (once, or once per box with `--instance a --instance b` / `--fleet`) and what
a sweep does per placed point. The GPUs: the job's `gpu` for a one-GPU run; for `gpus: N|all` the lowest N GPUs
that no foreign process holds (orchestrator/gpu_pick.py) and no orch run of this instance has locked.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .gpu_pick import all_gpus, choose, usable_gpus
from .inventory import Instance, Job

ACTIVE = ("starting", "running", "unknown")


@dataclass
class Launched:
    started: object          # runs.Started
    deployed: object         # deploy.DeployResult
    job: Job
    instance: Instance
    parent: object = None    # stages.Parent: the adapter a stage-2 run continues from


def on_instance(job: Job, instance: Instance, gpus: str | None = None) -> Job:
    """The job as it runs on `instance` (asked for explicitly: --instance a --instance b, --fleet, a sweep),
    with `--gpus` applied."""
    changes = {"instance": instance.name}
    if gpus is not None:
        changes["gpus"] = str(gpus)
    return dataclasses.replace(job, **changes)


def locked_gpus(runs: list[dict]) -> set[int]:
    """GPUs that this instance's active (or unknown: possibly active) orch runs hold."""
    held: set[int] = set()
    for run in runs:
        if run.get("state") in ACTIVE:
            meta = run.get("meta") or {}
            held.update(g for g in (meta.get("gpus") or [meta.get("gpu")]) if isinstance(g, int))
    return held


def pick_gpus(job: Job, instance: Instance, probe: dict | None, runs: list[dict]) -> list[int] | None:
    """The run's GPUs; None: the job's one `gpu` (a plain run, exactly as before)."""
    if job.gpus == "1":
        return None
    probe = probe or {}
    want = instance.expect.gpu
    return choose(instance.name, job.gpu_count, usable_gpus(probe, want, instance.expect.max_gpu_used_mib),
                  all_gpus(probe, want), frozenset(locked_gpus(runs)))


def launch(app, job: Job, instance: Instance, transport, *, force: bool = False, resume: bool = False,
           extra_epochs: int | None = None, say=None, meta_extra: dict | None = None,
           gpus: list[int] | None = None, resume_run: str | None = None) -> Launched:
    """Preflight (refused unless --force), deploy, ship the plan, start the run. `gpus`: placed by the caller
    (a sweep); else picked here."""
    from .commands.session import driver_version, preflight_report
    from .deploy import deploy as run_deploy
    from .run_plan import plan_document, ship
    from .runs import list_runs, start_training
    from .stages import resolve_parent

    s3 = app.inventory.s3_settings(job, instance)
    # runs on other GPUs of the box are no reason to refuse a run whose GPUs are chosen: its locks keep it apart
    shared = ("active runs",) if gpus is not None or job.gpus != "1" else ()
    report = preflight_report(transport, job, instance, s3, force, not_needed=shared)
    deployed = run_deploy(transport, instance, job, s3=s3, driver_version=driver_version(report),
                          progress=not app.json, say=say)
    parent = None if resume else resolve_parent(transport, instance, app.inventory, job, s3,
                                                python=deployed.python, payload_dir=deployed.bundle_dir,
                                                progress=not app.json, say=say)
    if parent is not None and say:
        say(f"stage 2: {job.name} continues from {parent.run_id or parent.source} ({parent.adapter_dir})")
    if gpus is None:
        gpus = pick_gpus(job, instance, report.probe, list_runs(transport, instance) if job.gpus != "1" else [])
    plan = plan_document(job, instance, s3, probe=report.probe, transport=transport)
    started = start_training(transport, instance, job, deployed, resume=resume, extra_epochs=extra_epochs,
                             plan_file=ship(transport, instance, plan, say=say), gpus=gpus, meta_extra=meta_extra,
                             resume_run=resume_run, parent=parent)
    return Launched(started, deployed, job, instance, parent)
