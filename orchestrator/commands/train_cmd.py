"""`orch train`: preflight, deploy, plan, then start the run detached from this session (it survives disconnects).
The plan (orchestrator/run_plan.py) is shipped to the instance; the run records it beside what it measures.

`--gpus N|all` (or the job's `gpus:`) runs one torchrun DDP run over N idle GPUs of the box; `--instance a
--instance b` or `--fleet` starts the same job on several boxes, each an ordinary run (orchestrator/launch.py)."""

from __future__ import annotations

import sys

import click

from ..cli import App, cli, common
from ..errors import InputError, OrchError
from ..output import emit_json, say
from .following import follow_run
from .session import connected


@cli.command()
@click.argument("job", required=False)
@click.option("--instance", "instances", multiple=True,
              help="Instance name from the inventory; repeat it to start the job on several boxes.")
@click.option("--fleet", is_flag=True, help="Start the job on every instance of the inventory (one run each).")
@click.option("--gpus", help="GPUs for one run: N (torchrun DDP, one process per GPU) or 'all'.")
@click.option("--follow", "-f", is_flag=True, help="Stream the log and a live step/loss line (Ctrl-C stops following, never the run).")
@click.option("--resume", is_flag=True, help="Continue the job's latest run from its last checkpoint.")
@click.option("--extra-epochs", type=click.IntRange(1), help="Train this many epochs beyond the recipe's.")
@click.option("--force", is_flag=True, help="Train even when preflight fails.")
@common
def train(app: App, job, instances, fleet, gpus, follow, resume, extra_epochs, force):
    """Start training detached from this session: it survives disconnects and this process exiting."""
    from ..bundle import check_job_inputs
    from ..launch import on_instance

    if fleet or len(instances) > 1:
        if not job:
            raise InputError("--fleet / several --instance need the job's name", hint="orch train JOB --fleet")
        if follow:
            raise InputError("--follow follows one run", hint="drop --follow; `orch status` shows every box")
        names = app.inventory.instance_names if fleet else list(dict.fromkeys(instances))
        found_job = app.inventory.job(job)
        check_job_inputs(found_job)
        jobs = [on_instance(found_job, app.inventory.instance(n), gpus) for n in names]
        return _train_many(app, jobs, resume, extra_epochs, force)
    found_job, target = app.inventory.resolve(job, instances[0] if instances else None)
    found_job = on_instance(found_job, target, gpus)
    check_job_inputs(found_job)  # bad input exits 2 here, before the instance is touched
    launched = _train_one(app, found_job, target, resume, extra_epochs, force, follow)
    if launched is not None:
        doc, final = launched
        doc.update(state=final["state"], exit_code=final["exit_code"], ok=final["state"] == "finished")
        if app.json:
            emit_json(doc)
        if final["state"] != "finished":
            say(f"run {doc['run_id']} {final['state']} (exit code {final['exit_code']})", style="bold red")
            sys.exit(1)


def _started_doc(launched, resume: bool) -> dict:
    started, deployed = launched.started, launched.deployed
    return {"ok": True, "run_id": started.run_id, "run_dir": started.run_dir, "instance": launched.instance.name,
            "job": launched.job.name, "resumed": resume, "gpus": started.gpus, "deploy": deployed.to_json(),
            "parent": launched.parent.to_json() if launched.parent is not None else None}


def _train_one(app, job, target, resume, extra_epochs, force, follow):
    from ..launch import launch

    with connected(target) as transport:
        launched = launch(app, job, target, transport, force=force, resume=resume, extra_epochs=extra_epochs,
                          say=say)
        started = launched.started
        on = f" on GPUs {','.join(map(str, started.gpus))}" if len(started.gpus or []) > 1 else ""
        say(f"run {started.run_id} {'resumed' if resume else 'started'} on {target.name}{on} (pid {started.pid})",
            style="green")
        if not app.json:
            print(started.run_id, flush=True)
        doc = _started_doc(launched, resume)
        if not follow:
            if app.json:
                emit_json(doc)
            else:
                say(f"follow it with `orch logs --run {started.run_id} --follow`")
            return None
        final = follow_run(app, target, started.run_dir, started.run_id, transport=transport,
                           payload_dir=launched.deployed.bundle_dir)
    return doc, final


def _train_many(app, jobs, resume, extra_epochs, force):
    """One run per box, started one box after another; a box that fails is reported and the others go on."""
    from ..launch import launch

    results, failed = [], 0
    for job in jobs:
        target = app.inventory.instance(job.instance)
        try:
            with connected(target) as transport:
                launched = launch(app, job, target, transport, force=force, resume=resume,
                                  extra_epochs=extra_epochs, say=say)
            results.append(_started_doc(launched, resume))
            say(f"run {launched.started.run_id} started on {target.name}", style="green")
            if not app.json:
                print(launched.started.run_id, flush=True)
        except OrchError as exc:
            failed += 1
            results.append({"ok": False, "instance": target.name, "job": job.name, "error": exc.message,
                            "hint": exc.hint})
            say(f"{target.name}: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""), style="bold red")
    if app.json:
        emit_json({"ok": not failed, "runs": results})
    if failed:
        sys.exit(1)
