"""What the run commands share: one connection per command, the preflight gate of deploy/train, and finding the
run a command means (`--run ID`, else the latest) over that same connection."""

from __future__ import annotations

from contextlib import contextmanager

from ..errors import CheckFailed
from ..output import say


@contextmanager
def connected(instance):
    from ..transport import connect

    transport = connect(instance)
    try:
        yield transport
    finally:
        transport.close()


def preflight_gate(transport, job, instance, s3, force: bool) -> str | None:
    """Preflight over the open connection: refuse on failure unless --force; return the NVIDIA driver version."""
    return driver_version(preflight_report(transport, job, instance, s3, force))


def preflight_report(transport, job, instance, s3, force: bool, not_needed: tuple[str, ...] = ()):
    """Preflight over the open connection, refusing on a failed check unless --force; the report. Checks named
    in `not_needed` (e.g. "GPU idle" for a command that never uses the GPU) are shown, never refused on."""
    from ..preflight import run_preflight

    report = run_preflight(instance, job, transport=transport, s3=s3)
    failed = [c for c in report.checks if not c.ok]
    blocking = [c for c in failed if c.name not in not_needed]
    if report.error or blocking:
        reasons = "; ".join(f"{c.name}: {c.detail}" for c in blocking) or (report.error or "unreachable")
        if not force:
            raise CheckFailed(f"preflight failed on {instance.name}: {reasons}",
                              hint=f"fix it (see `orch preflight {job.name}`), or pass --force to go on anyway")
        say(f"preflight failed on {instance.name} ({reasons}); going on because of --force", style="yellow")
    for check in failed:
        if check.name in not_needed:
            say(f"note: {check.name}: {check.detail} (not needed here)", style="yellow")
    return report


def driver_version(report) -> str | None:
    gpus = (report.probe or {}).get("gpus") or []
    return gpus[0].get("driver_version") if gpus else None


@contextmanager
def run_on_instance(app, job, instance, run_id):
    """Connect once, find the run a command means (`--run`, else the latest), and keep the connection."""
    from ..runs import find_run

    found_job, target = app.inventory.resolve(job, instance, need_job=False, run_id=run_id)
    with connected(target) as transport:
        run = find_run(transport, target, job=found_job.name if found_job and job else None, run_id=run_id)
        yield found_job, target, run, transport

