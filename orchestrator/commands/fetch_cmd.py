"""`orch fetch-adapter`: a finished run's adapter to this machine, every file verified; `--upload s3://`."""

from __future__ import annotations

from pathlib import Path

import click

from ..cli import App, cli, common
from ..output import emit_json, say
from .session import run_on_instance


@cli.command("fetch-adapter")
@click.argument("job", required=False)
@click.option("--instance", help="Instance name from the inventory.")
@click.option("--run", "run_id", help="Run id (default: the latest run).")
@click.option("--dest", type=click.Path(file_okay=False), default="adapters", show_default=True,
              help="Local folder; the adapter lands in DEST/<job>/<run id>/.")
@click.option("--upload", help="Also archive the verified adapter to this s3:// prefix.")
@common
def fetch_adapter(app: App, job, instance, run_id, dest, upload):
    """Pull a finished run's adapter, tokenizer, run.json, metrics and eval report; verify every file."""
    from ..fetch import fetch_adapter as fetch

    with run_on_instance(app, job, instance, run_id) as (found_job, target, run, transport):
        job_name = run.get("job") or (found_job.name if found_job else "job")
        result = fetch(transport, target, run["run_dir"], Path(dest), job=job_name, run_id=run["run_id"],
                       progress=not app.json, payload_dir=(run.get("meta") or {}).get("payload"))
    doc = {"ok": True, **result.to_json()}
    uploaded = None
    if upload:
        from ..fetch import upload_adapter

        uploaded = upload_adapter(Path(result.dest), upload, app.inventory.s3_settings(found_job, target),
                                  progress=not app.json)
        doc["upload"] = uploaded.to_json()
    if app.json:
        emit_json(doc)
        return
    say(result.summary(), style="green")
    if uploaded:
        say(uploaded.summary(), style="green")
    print(result.dest)
