"""`orch sweep start|status|stop SPEC.yaml`: a grid of runs of one job over the free GPUs of a fleet.

The runs on the instances are the source of truth: `status` rebuilds the table from them (from any laptop or CI
job that has the spec and the inventory); `start` can be run again, or twice at once, and never places a point
twice (orchestrator/sweep/controller.py)."""

from __future__ import annotations

import sys

import click

from ..cli import App, cli, common
from ..output import emit_json, say, table


@cli.group()
def sweep():
    """Hyper-parameter sweeps across the instances of the inventory."""


def _show(app: App, spec, rows, extra: dict | None = None) -> None:
    from ..sweep.board import HEADERS, table_rows

    if app.json:
        emit_json({"ok": all(r.state == "finished" for r in rows), "sweep": spec.name, "metric": spec.metric,
                   "goal": spec.goal, "rows": [r.to_json() for r in rows], **(extra or {})})
        return
    table(f"sweep {spec.name} ({spec.metric}, {spec.goal})", HEADERS, table_rows(rows))


@sweep.command("start")
@click.argument("spec_file", type=click.Path(dir_okay=False))
@click.option("--poll", type=float, default=3.0, show_default=True, help="Seconds between rounds.")
@click.option("--timeout", type=float, help="Give up waiting after this many seconds (the runs go on).")
@common
def start(app: App, spec_file, poll, timeout):
    """Place the sweep's runs on free GPUs, more as others finish, until every point has run."""
    from ..bundle import check_job_inputs
    from ..sweep.controller import Sweep
    from ..sweep.spec import load_spec

    spec = load_spec(spec_file)
    controller = Sweep(app, spec, say=say)
    check_job_inputs(controller.job)
    say(f"sweep {spec.name}: {len(controller.points)} points over {', '.join(controller.order)}")
    rows = controller.run(poll=poll, timeout=timeout)
    _show(app, spec, rows)
    if not all(r.state == "finished" for r in rows):
        sys.exit(1)


@sweep.command("status")
@click.argument("spec_file", type=click.Path(dir_okay=False))
@common
def status(app: App, spec_file):
    """The sweep's table, rebuilt from the runs on its instances."""
    from ..sweep.controller import Sweep
    from ..sweep.spec import load_spec

    spec = load_spec(spec_file)
    controller = Sweep(app, spec, say=say)
    controller.observe(probe=False)
    try:
        claims = controller.claims("list")["claims"]
    except Exception:  # noqa: BLE001 - the home instance may be the one that is down: show what the runs say
        claims = {}
    rows = controller.rows(claims)
    unreachable = sorted(n for n, ok in controller.fleet.reachable.items() if not ok)
    _show(app, spec, rows, {"unreachable": unreachable})
    if unreachable and not app.json:
        say(f"not answering: {', '.join(unreachable)}", style="yellow")


@sweep.command("stop")
@click.argument("spec_file", type=click.Path(dir_okay=False))
@click.option("--grace", type=float, default=30.0, show_default=True, help="Seconds to wait before killing.")
@common
def stop(app: App, spec_file, grace):
    """Stop placing (every controller of the sweep) and stop its active runs."""
    from ..runs import stop_run
    from ..sweep.board import ACTIVE
    from ..sweep.controller import Sweep
    from ..sweep.spec import load_spec
    from ..transport import connect

    spec = load_spec(spec_file)
    controller = Sweep(app, spec, say=say)
    controller.claims("stop")
    controller.observe(probe=False)
    stopped = []
    for name, run in controller.all_runs():
        if (run.get("meta") or {}).get("sweep") == spec.name and run.get("state") in ACTIVE \
                and controller.fleet.reachable.get(name):
            transport = connect(controller.instances[name])
            try:
                stop_run(transport, controller.instances[name], run, grace)
            finally:
                transport.close()
            stopped.append(run["run_id"])
            say(f"stopped {run['run_id']} on {name}")
    if app.json:
        emit_json({"ok": True, "sweep": spec.name, "stopped": stopped})
