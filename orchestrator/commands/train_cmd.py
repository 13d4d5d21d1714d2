"""`orch train`: preflight, deploy, plan, then start the run detached from this session (it survives disconnects).
The plan (orchestrator/run_plan.py) is shipped to the instance; the run records it beside what it measures."""

from __future__ import annotations

import sys

import click

from ..cli import App, cli, common
from ..output import emit_json, say
from .following import follow_run
from .session import connected, driver_version, preflight_report


@cli.command()
@click.argument("job", required=False)
@click.option("--instance", help="Instance name from the inventory.")
@click.option("--follow", "-f", is_flag=True, help="Stream the log and a live step/loss line (Ctrl-C stops following, never the run).")
@click.option("--resume", is_flag=True, help="Continue the job's latest run from its last checkpoint.")
@click.option("--extra-epochs", type=click.IntRange(1), help="Train this many epochs beyond the recipe's.")
@click.option("--force", is_flag=True, help="Train even when preflight fails.")
@common
def train(app: App, job, instance, follow, resume, extra_epochs, force):
    """Start training detached from this session: it survives disconnects and this process exiting."""
    from ..bundle import check_job_inputs
    from ..deploy import deploy as run_deploy
    from ..run_plan import plan_document, ship
    from ..runs import start_training
    from ..stages import resolve_parent

    found_job, target = app.inventory.resolve(job, instance)
    check_job_inputs(found_job)  # bad input exits 2 here, before the instance is touched
    s3 = app.inventory.s3_settings(found_job, target)
    with connected(target) as transport:
        report = preflight_report(transport, found_job, target, s3, force)
        deployed = run_deploy(transport, target, found_job, s3=s3, driver_version=driver_version(report),
                              progress=not app.json, say=say)
        parent = None if resume else resolve_parent(transport, target, app.inventory, found_job, s3,
                                                    python=deployed.python, payload_dir=deployed.bundle_dir,
                                                    progress=not app.json, say=say)
        if parent is not None:
            say(f"stage 2: {found_job.name} continues from {parent.run_id or parent.source} ({parent.adapter_dir})")
        plan = plan_document(found_job, target, s3, probe=report.probe, transport=transport)
        started = start_training(transport, target, found_job, deployed, resume=resume, extra_epochs=extra_epochs,
                                 plan_file=ship(transport, target, plan, say=say), parent=parent)
        say(f"run {started.run_id} {'resumed' if resume else 'started'} on {target.name} (pid {started.pid})",
            style="green")
        if not app.json:
            print(started.run_id, flush=True)
        doc = {"ok": True, "run_id": started.run_id, "run_dir": started.run_dir, "instance": target.name,
               "job": found_job.name, "resumed": resume, "deploy": deployed.to_json(),
               "parent": parent.to_json() if parent is not None else None}
        if not follow:
            if app.json:
                emit_json(doc)
            else:
                say(f"follow it with `orch logs --run {started.run_id} --follow`")
            return
        final = follow_run(app, target, started.run_dir, started.run_id, transport=transport,
                        payload_dir=deployed.bundle_dir)
    doc.update(state=final["state"], exit_code=final["exit_code"], ok=final["state"] == "finished")
    if app.json:
        emit_json(doc)
    if final["state"] != "finished":
        say(f"run {started.run_id} {final['state']} (exit code {final['exit_code']})", style="bold red")
        sys.exit(1)

