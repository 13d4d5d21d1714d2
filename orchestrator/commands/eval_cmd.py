"""`orch eval`: the run's adapter evaluated on the instance with its task's evaluation; exit 1 below the gate."""

from __future__ import annotations

import sys

import click

from ..cli import App, cli, common
from ..output import emit_json, say
from .session import run_on_instance


@cli.command("eval")
@click.argument("job", required=False)
@click.option("--instance", help="Instance name from the inventory.")
@click.option("--run", "run_id", help="Run id (default: the latest run).")
@click.option("--gate", type=float, help="The gate to pass (verbosity: VERBOSE/TERSE ratio; classification: the "
                                          "recipe's metric) [default: the recipe's, with the job's eval_gate].")
@click.option("--samples", type=click.IntRange(1), help="Classification: evaluate this many samples.")
@click.option("--compare-base", is_flag=True, help="Classification: also run the base model, list disagreements.")
@common
def eval_(app: App, job, instance, run_id, gate, samples, compare_base):
    """Evaluate a run's adapter on the instance with its task's evaluation; exit 1 below the gate."""
    from ..evaluation import run_eval, show_eval

    with run_on_instance(app, job, instance, run_id) as (found_job, target, run, transport):
        report = run_eval(transport, target, run, gate, samples=samples, compare_base=compare_base)
    if app.json:
        emit_json({"ok": report.get("passed", False), "run_id": run["run_id"], "report": report})
    else:
        show_eval(report, run["run_id"])
    if not report.get("passed"):
        if not app.json:
            say(f"{report.get('task', 'verbosity')} gate failed: {report.get('gate_detail') or report.get('ratio')} "
                f"(gate {report.get('gate')})", style="bold red")
        sys.exit(1)

