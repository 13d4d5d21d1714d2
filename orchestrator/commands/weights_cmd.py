"""`orch sync-weights`: the instance downloads the job's s3:// weights into its models dir."""

from __future__ import annotations

import click

from ..cli import App, cli, common
from ..output import emit_json, human_bytes, say


@cli.command("sync-weights")
@click.argument("job", required=False)
@click.option("--instance", help="Instance name from the inventory.")
@click.option("--dry-run", is_flag=True, help="List and compare only: say what would be downloaded.")
@common
def sync_weights_cmd(app: App, job, instance, dry_run):
    """Sync the job's S3 weights into the instance's models dir (resumable; gzipped JSON repaired).

    The instance downloads them itself; files already there are not fetched again. Exit 0 when the
    weights are in place, 1 when the sync failed, 2 on bad input (URI, bucket, empty prefix).
    """
    from ..bundle import requirements_hash
    from ..layout import payload_python
    from ..remote import Remote
    from ..transport import connect
    from ..weights import local_weights_path, sync_weights

    found_job, target = app.inventory.resolve(job, instance)
    transport = connect(target)
    try:
        remote = Remote(transport, target)
        python = payload_python(target, requirements_hash())
        venv = None if target.python_env else remote.layout.venv(requirements_hash())
        installed = remote.install({"payload": (remote.payload_dir, remote.payload)}, report_venv=venv,
                                   holder={"job": found_job.name, "what": "sync-weights"}, say=say)
        if venv and installed.venv != "present":
            python = target.python      # no payload venv yet: the system python, if it has botocore
        summary = sync_weights(transport, target, found_job, app.inventory.s3_settings(found_job, target),
                               python=python, cwd=remote.payload_dir, lock=remote.layout.deploy_lock,
                               progress=not app.json, dry_run=dry_run)
    finally:
        transport.close()
    path = local_weights_path(target, found_job)
    if app.json:
        emit_json({"ok": True, "instance": target.name, "job": found_job.name, "path": path, **summary})
        return
    if dry_run:
        say(f"{summary['to_download_files']} of {summary['files']} files ({human_bytes(summary['to_download_bytes'])}) "
            f"would be downloaded to {target.name}:{path}")
        return
    repaired = summary.get("repaired") or []
    say(f"weights in place on {target.name}: {path} ({summary['files']} files, {human_bytes(summary['bytes'])}; "
        f"{summary['downloaded_files']} downloaded at {summary['rate_mb_s']:.0f} MB/s, "
        f"{summary['skipped_files']} already there"
        + (f", {len(repaired)} repaired" if repaired else "") + f") in {summary['seconds']:.1f} s",
        style="green")
