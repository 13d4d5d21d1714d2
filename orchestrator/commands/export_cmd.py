"""`orch export`: a finished run's adapter made servable by vLLM, on the instance (see orchestrator/exports.py)."""

from __future__ import annotations

import click

from ..cli import App, cli, common
from ..output import emit_json, say
from .session import run_on_instance


@cli.command("export")
@click.argument("job", required=False)
@click.option("--instance", help="Instance name from the inventory.")
@click.option("--run", "run_id", help="Run id (default: the latest run).")
@click.option("--format", "fmt", type=click.Choice(["lora", "merged"]), default="lora", show_default=True,
              help="lora: the adapter with its style rows as an embedding LoRA, served on the unchanged base; "
                   "merged: merged into a full-precision copy of the base (the way out where lora is impossible, "
                   "e.g. Mistral).")
@click.option("--quantize", type=click.Choice(["w4a16"]), help="Then quantize the merged model (AWQ on a GPU, "
                                                                 "round-to-nearest without one); needs --format merged.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where the merge and the checks run on the instance.")
@click.option("--force", is_flag=True, help="Make the export again even if the run already has it.")
@common
def export(app: App, job, instance, run_id, fmt, quantize, device, force):
    """Export a run's adapter on the instance into what vLLM serves, checked (keys vLLM accepts, answer lengths
    equal to the adapter's) and with a sha256 manifest; lands in RUN/exports/<format>."""
    from ..exports import ExportRequest, export_run, summary

    request = ExportRequest(fmt, quantize, force, device)
    with run_on_instance(app, job, instance, run_id) as (_, target, run, transport):
        doc = export_run(transport, target, run, request, say)
    doc = {"ok": True, "instance": target.name, "run_id": run["run_id"], **doc}
    if app.json:
        emit_json(doc)
        return
    say(summary(doc), style="green")
    print(doc["path"])
