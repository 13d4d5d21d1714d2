"""`orch eval`: the run's adapter evaluated on the instance with its task's evaluation; exit 1 below the gate.
`--suite iac`: the adapter answers held-out IaC prompts there and the answers are validated (orchestrator/iac_eval.py);
a stage-2 adapter with style tokens also gets its verbosity gate checked again."""

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
@click.option("--suite", type=click.Choice(["task", "iac"]), default="task", show_default=True,
              help="task: the recipe's own evaluation; iac: validate answers to held-out IaC prompts.")
@click.option("--prompts", type=click.Path(dir_okay=False), help="IaC prompts JSONL [default: "
                                                                 "training_data/iac_eval_prompts.jsonl].")
@click.option("--remote-validate", is_flag=True, help="IaC: validate on the instance (validators venv built there).")
@click.option("--max-new-tokens", type=click.IntRange(1), default=1024, show_default=True,
              help="IaC: answer length cap.")
@click.option("--style", type=click.Choice(["TERSE", "VERBOSE"]), default="TERSE", show_default=True,
              help="IaC: style token for prompts without one (adapters with style tokens).")
@common
def eval_(app: App, job, instance, run_id, gate, samples, compare_base, suite, prompts, remote_validate,
          max_new_tokens, style):
    """Evaluate a run's adapter on the instance with its task's evaluation (or --suite iac); exit 1 below a gate."""
    if suite == "iac":
        _eval_iac(app, job, instance, run_id, gate, prompts, remote_validate, max_new_tokens, style)
        return
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


def _eval_iac(app: App, job, instance, run_id, gate, prompts, remote_validate, max_new_tokens, style):
    from ..evaluation import run_eval, show_eval
    from ..iac_eval import answer_on_instance, iac_summary, read_prompts_file, validate_here, validate_on_instance
    from .validators_cmd import show_iac_report

    data = read_prompts_file(prompts)
    progress = (lambda message: None) if app.json else (lambda message: say(message))
    verbosity = None
    with run_on_instance(app, job, instance, run_id) as (found_job, target, run, transport):
        progress(f"{run['run_id']}: answering the IaC prompts on {target.name}")
        answered = answer_on_instance(transport, target, run, data, max_new_tokens=max_new_tokens, style=style)
        if remote_validate:
            report = validate_on_instance(transport, target, run, answered["out"], progress)
        if (answered.get("parent") or {}).get("style_tokens"):     # stage 2 of a style-token adapter
            progress("stage 2: checking the verbosity gate again")
            verbosity = run_eval(transport, target, run, gate)
    if not remote_validate:
        report = validate_here(answered["answers"], progress)
    summary = iac_summary(report, answered)
    ok = report["ok"] and (verbosity is None or bool(verbosity.get("passed")))
    if app.json:
        emit_json({"ok": ok, "run_id": run["run_id"], "suite": "iac", "validated_on": target.name if remote_validate
                   else "controller", "summary": summary, "report": report, "verbosity": verbosity})
    else:
        show_iac_report(report)
        for source, row in summary["by_source"].items():
            say(f"prompts {source}: {row['answers']} answer(s), every validator passed on {row['all_pass']}, "
                f"terraform validate {row['validate_pass']}/{row['validate_checked']}")
        say(f"answers: mean {summary['mean_tokens']} tokens, {summary['hit_max_new_tokens']} hit --max-new-tokens")
        if verbosity is not None:
            show_eval(verbosity, run["run_id"])
    if not ok:
        sys.exit(1)
