"""`orch fetch-adapter`: a finished run's adapter to this machine, every file verified; `--upload s3://`;
`--export [LABEL]`: one of the run's exports (`orch export`) instead, verified by its own manifest."""

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
@click.option("--export", "export_label", is_flag=False, flag_value="", default=None, metavar="[LABEL]",
              help="Fetch the run's export (lora, merged, merged-w4a16; alone: the only one) into "
                   "DEST/<job>/<run id>/exports/<label>/ instead of the adapter.")
@common
def fetch_adapter(app: App, job, instance, run_id, dest, upload, export_label):
    """Pull a finished run's adapter, tokenizer, run.json, metrics and eval report; verify every file."""
    from ..fetch import ADAPTER, export_unit
    from ..fetch import fetch_adapter as fetch

    with run_on_instance(app, job, instance, run_id) as (found_job, target, run, transport):
        job_name = run.get("job") or (found_job.name if found_job else "job")
        unit = ADAPTER if export_label is None else export_unit(_export_label(transport, target, run, export_label))
        result = fetch(transport, target, run["run_dir"], Path(dest), job=job_name, run_id=run["run_id"],
                       progress=not app.json, payload_dir=(run.get("meta") or {}).get("payload"), unit=unit)
    doc = {"ok": True, **result.to_json()}
    uploaded = None
    if upload:
        from ..fetch import upload_adapter

        key = None if unit is ADAPTER else (job_name, run["run_id"], *unit.folder.split("/"))
        uploaded = upload_adapter(Path(result.dest), upload, app.inventory.s3_settings(found_job, target),
                                  progress=not app.json, sub=unit.local, key=key)
        doc["upload"] = uploaded.to_json()
    if app.json:
        emit_json(doc)
        return
    say(result.summary(), style="green")
    if uploaded:
        say(uploaded.summary(), style="green")
    print(result.dest)


def _export_label(transport, target, run: dict, label: str) -> str:
    """`--export LABEL` as given, or (bare `--export`) the run's only export."""
    from ..errors import InputError
    from ..exports import existing_exports

    if label:
        return label
    have = sorted(existing_exports(transport, target, run))
    if len(have) == 1:
        return have[0]
    if not have:
        raise InputError(f"{target.name}: run {run['run_id']} has no export yet",
                         hint=f"make one with `orch export --run {run['run_id']}`")
    raise InputError(f"{target.name}: run {run['run_id']} has {len(have)} exports ({', '.join(have)})",
                     hint="name one: --export LABEL")
