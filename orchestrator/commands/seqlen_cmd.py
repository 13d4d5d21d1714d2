"""`orch seqlen JOB`: seed 003's sequence-length report of the job's dataset, tokenized on the instance with the
model's own tokenizer and chat template, printed here.

The job is deployed first, exactly as `orch deploy` does it -- payload, job inputs, venv and the weights sync --
because the tokenizer lives in the weights folder: a tokenizer-only sync would leave a half-synced model folder
for the next deploy to reason about, while the full sync is what training needs next anyway and costs one
listing once the weights are there (`--no-weights` skips it when they are). Preflight runs as for a deploy (right
box, disk), but what only training needs -- an idle GPU, the memory plan, no other run active -- is shown,
never refused on: the report reads the tokenizer only, so it can run beside a training.
"""

from __future__ import annotations

import json
import posixpath

import click

from ..cli import App, cli, common
from ..errors import InputError, RemoteError
from ..output import emit_json, say
from .session import connected, driver_version, preflight_report

NOT_NEEDED = ("GPU idle", "GPU memory plan", "active runs")     # preflight checks about training only
TIMEOUT_S = 3600.0


def seqlen_argv(deployed, cutoff=None, show_examples=0, max_samples=None, eval_set=False) -> list[str]:
    argv = [deployed.python, "-m", "remote_payload.seqlen", "--job", posixpath.join(deployed.job_dir, "job.json"),
            "--model-dir", deployed.model_dir, "--json"]
    argv += ["--cutoff", str(cutoff)] if cutoff is not None else []
    argv += ["--show-examples", str(show_examples)] if show_examples else []
    argv += ["--max-samples", str(max_samples)] if max_samples else []
    argv += ["--eval"] if eval_set else []
    return argv


def run_seqlen(transport, instance, deployed, **options) -> dict:
    """The payload's JSON report; bad input (exit 2: job, recipe, dataset, cutoff) is an InputError."""
    result = transport.run(seqlen_argv(deployed, **options), cwd=deployed.bundle_dir, check=False, timeout=TIMEOUT_S)
    if result.exit_code == 0:
        try:
            return json.loads(result.text)
        except ValueError:
            pass
    detail = result.err_text.strip()[-800:] or result.text.strip()[-300:] or "(no output)"
    if result.exit_code == 2:
        raise InputError(f"{instance.name}: {detail.removeprefix('seqlen: ')}")
    raise RemoteError(f"{instance.name}: the sequence-length report failed (exit {result.exit_code}): {detail}")


@cli.command("seqlen")
@click.argument("job", required=False)
@click.option("--instance", help="Instance name from the inventory.")
@click.option("--cutoff", type=click.IntRange(1), help="The length to test [default: the recipe's max_length].")
@click.option("--show-examples", type=click.IntRange(0), default=0, metavar="N",
              help="Walk the first N examples through JSON -> messages -> template -> tokens -> masking.")
@click.option("--max-samples", type=click.IntRange(1), metavar="N", help="Analyse only the first N examples.")
@click.option("--eval", "eval_set", is_flag=True, help="Analyse the job's eval_dataset instead.")
@click.option("--no-weights", is_flag=True, help="Skip the weights sync (the tokenizer must be on the instance).")
@click.option("--force", is_flag=True, help="Go on when preflight fails.")
@common
def seqlen(app: App, job, instance, cutoff, show_examples, max_samples, eval_set, no_weights, force):
    """Token lengths of the job's examples with the model's tokenizer: percentiles, what a cutoff leaves out,
    masked vs trained tokens, a suggested max_length.

    `--json` prints the payload's report (with "instance" and "job"): `orch plan JOB --seqlen FILE` reads it
    for exact token counts. Exit 0 done, 1 the instance failed, 2 bad input.
    """
    from remote_payload.seqlen import describe_example, format_report

    from ..bundle import check_job_inputs
    from ..deploy import deploy as run_deploy

    found_job, target = app.inventory.resolve(job, instance)
    check_job_inputs(found_job)  # bad input exits 2 here, before the instance is touched
    s3 = app.inventory.s3_settings(found_job, target)
    with connected(target) as transport:
        report = preflight_report(transport, found_job, target, s3, force, not_needed=NOT_NEEDED)
        deployed = run_deploy(transport, target, found_job, s3=s3, driver_version=driver_version(report),
                              sync_weights=not no_weights, progress=not app.json, say=say)
        say(f"tokenizing {found_job.name}'s {'eval_dataset' if eval_set else 'dataset'} on {target.name} "
            f"with {deployed.model_dir}'s tokenizer")
        doc = run_seqlen(transport, target, deployed, cutoff=cutoff, show_examples=show_examples,
                         max_samples=max_samples, eval_set=eval_set)
    if app.json:
        emit_json({"ok": True, "instance": target.name, "job": found_job.name, **doc})
        return
    for walk in doc.get("walk_through") or []:
        print(describe_example(walk, doc["cutoff"]))
    print(format_report(doc), flush=True)
    if doc["over_cutoff"]:
        say(f"{doc['over_cutoff']} example(s) are longer than {doc['cutoff']} tokens and would be left out of "
            f"training (raise max_length in the job's overrides, or shorten them)", style="yellow")
