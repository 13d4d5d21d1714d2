"""`orch status`, `orch logs`, `orch stop`: the runs on an instance, one run's log, stopping one."""

from __future__ import annotations

import click

from ..cli import App, cli, common
from ..errors import InputError
from ..output import emit_json, say, table
from .following import follow_run
from .session import connected, run_on_instance


@cli.command()
@click.argument("job", required=False)
@click.option("--instance", help="Instance name from the inventory.")
@click.option("--run", "run_id", help="One run (default: every run on the instance).")
@common
def status(app: App, job, instance, run_id):
    """Runs on an instance: running / finished / failed / stopped / lost; the best evaluation of runs that have one.

    With --run ID, also the run's plan against what it measured (peak GPU memory, seconds per step)."""
    from ..runs import list_runs

    found_job, target = app.inventory.resolve(job, instance, need_job=False, run_id=run_id)
    with connected(target) as transport:
        runs = list_runs(transport, target, job=found_job.name if (found_job and job) else None, run_id=run_id)
    if run_id and not runs:
        raise InputError(f"{target.name}: run {run_id} not found", hint=f"`orch status --instance {target.name}` lists its runs")
    if app.json:
        emit_json({"ok": True, "instance": target.name, "runs": runs})
        return
    if not runs:
        say(f"{target.name}: no runs yet")
        return
    rows = []
    for r in runs:
        m = r.get("last_metrics") or {}
        loss = m.get("loss", m.get("train_loss"))  # the final record carries the run's mean train_loss
        loss = f"{loss:.4f}" if isinstance(loss, (int, float)) else ""
        rows.append((r["run_id"], r["state"], "" if r["exit_code"] is None else r["exit_code"], m.get("step", ""),
                     loss, _best(r), "" if r["heartbeat_age_s"] is None else f"{r['heartbeat_age_s']:.0f} s ago",
                     "yes" if r["has_adapter"] else ""))
    table(f"runs on {target.name}", ["run", "state", "exit", "step", "loss", "best", "heartbeat", "adapter"], rows)
    for r in runs:
        if r["state"] == "unknown":
            say(f"  {r['run_id']}: state unknown: {r.get('reason')}", style="yellow")
        if r.get("ranks") and (run_id or r["state"] in ("running", "starting")):
            say(f"  {r['run_id']} ranks: " + "; ".join(_rank_line(k) for k in r["ranks"]))
    if run_id:
        from ..run_plan import show_check

        show_check(runs[0].get("plan_check"), run_id)


def _rank_line(rank: dict) -> str:
    """'1 running, step 40, beat 2 s ago': one rank of a DDP run."""
    beat = rank.get("heartbeat_age_s")
    parts = [f"{rank.get('rank')} {rank.get('status')}", f"step {rank.get('step')}"]
    if rank.get("status") == "running" and beat is not None:
        parts.append(f"beat {beat:.0f} s ago" + ("" if rank.get("alive") else " (process gone)"))
    return ", ".join(parts)


def _best(run: dict) -> str:
    """'f1 0.9130 at step 150 (early stop)': the evaluation the adapter is (or would be) restored from."""
    best = run.get("best") or {}
    if best.get("step") is None:
        return "early stop" if run.get("early_stopped") else ""
    value = best.get("value")
    shown = f"{value:.4f}" if isinstance(value, (int, float)) else str(value)
    stopped = " (early stop)" if run.get("early_stopped") else ""
    return f"{best.get('metric')} {shown} at step {best['step']}{stopped}"


@cli.command()
@click.argument("job", required=False)
@click.option("--instance", help="Instance name from the inventory.")
@click.option("--run", "run_id", help="Run id (default: the latest run).")
@click.option("--follow", "-f", is_flag=True, help="Keep streaming until the run ends.")
@click.option("--offset", type=click.IntRange(0), default=0, help="Start at this byte of the log.")
@click.option("--rank", type=click.IntRange(0), default=0, help="A DDP run: rank K's own log (0: the run's log).")
@common
def logs(app: App, job, instance, run_id, follow, offset, rank):
    """Print a run's log; --follow re-attaches by byte offset, so no line is lost or repeated."""
    with run_on_instance(app, job, instance, run_id) as (_, target, run, transport):
        nproc = (run.get("meta") or {}).get("nproc") or 1
        if rank >= nproc:
            raise InputError(f"run {run['run_id']} has {nproc} rank{'s' if nproc > 1 else ''}: no rank {rank}",
                             hint="ranks count from 0; --rank K is for runs started with --gpus N")
        final = follow_run(app, target, run["run_dir"], run["run_id"], offset=offset, follow=follow,
                           transport=transport, payload_dir=(run.get("meta") or {}).get("payload"), rank=rank)
    if app.json:
        emit_json({"ok": True, "run": final})


@cli.command()
@click.argument("job", required=False)
@click.option("--instance", help="Instance name from the inventory.")
@click.option("--run", "run_id", help="Run id (default: the latest run).")
@click.option("--grace", type=float, default=30.0, show_default=True, help="Seconds to wait before killing.")
@common
def stop(app: App, job, instance, run_id, grace):
    """Stop a run: SIGTERM, then SIGKILL after --grace seconds. The GPU lock is released."""
    from ..runs import stop_run

    with run_on_instance(app, job, instance, run_id) as (_, target, run, transport):
        result = stop_run(transport, target, run, grace)
    state = result["run"]["state"]
    if app.json:
        emit_json({"ok": True, **result})
    elif result.get("already"):
        say(f"run {run['run_id']} is not running ({result['already']})")
    else:
        say(f"run {run['run_id']} {state}{' (forced)' if result.get('forced') else ''}", style="green")

