"""`orch deploy`: payload, job inputs, venv and weights onto the instance. Idempotent."""

from __future__ import annotations

import click

from ..cli import App, cli, common
from ..output import emit_json, say
from .session import connected, preflight_gate


@cli.command()
@click.argument("job", required=False)
@click.option("--instance", help="Instance name from the inventory.")
@click.option("--no-weights", is_flag=True, help="Skip the weights sync.")
@click.option("--force", is_flag=True, help="Deploy even when preflight fails.")
@common
def deploy(app: App, job, instance, no_weights, force):
    """Ship the payload bundle, build or reuse its venv, sync the weights. Idempotent."""
    from ..bundle import check_job_inputs
    from ..deploy import deploy as run_deploy

    found_job, target = app.inventory.resolve(job, instance)
    check_job_inputs(found_job)  # bad input exits 2 here, before the instance is touched
    s3 = app.inventory.s3_settings(found_job, target)
    with connected(target) as transport:
        driver = preflight_gate(transport, found_job, target, s3, force)
        result = run_deploy(transport, target, found_job, s3=s3, driver_version=driver,
                            sync_weights=not no_weights, progress=not app.json, say=say)
    if app.json:
        emit_json({"ok": True, **result.to_json()})
        return
    for step in result.steps:
        say(f"  {step}")
    say(f"deployed {found_job.name} to {target.name} in {result.seconds:.1f} s "
        f"({result.payload_bytes_sent} payload bytes sent)", style="green")

