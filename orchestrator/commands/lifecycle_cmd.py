"""The job lifecycle: deploy, train (detached), status, logs, stop, eval, fetch-adapter."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

import click

from ..cli import App, cli, common
from ..errors import CheckFailed, InputError
from ..output import console, emit_json, say, table


@contextmanager
def connected(instance):
    from ..transport import connect

    transport = connect(instance)
    try:
        yield transport
    finally:
        transport.close()


def _preflight_gate(transport, job, instance, s3, force: bool) -> str | None:
    """Preflight over the open connection: refuse on failure unless --force; return the NVIDIA driver version."""
    from ..preflight import run_preflight

    report = run_preflight(instance, job, transport=transport, s3=s3)
    if not report.ok:
        failed = [c for c in report.checks if not c.ok]
        reasons = "; ".join(f"{c.name}: {c.detail}" for c in failed) or (report.error or "unreachable")
        if not force:
            raise CheckFailed(f"preflight failed on {instance.name}: {reasons}",
                              hint=f"fix it (see `orch preflight {job.name}`), or pass --force to go on anyway")
        say(f"preflight failed on {instance.name} ({reasons}); going on because of --force", style="yellow")
    gpus = (report.probe or {}).get("gpus") or []
    return gpus[0].get("driver_version") if gpus else None


@cli.command()
@click.argument("job", required=False)
@click.option("--instance", help="Instance name from the inventory.")
@click.option("--no-weights", is_flag=True, help="Skip the weights sync.")
@click.option("--force", is_flag=True, help="Deploy even when preflight fails.")
@common
def deploy(app: App, job, instance, no_weights, force):
    """Ship the payload bundle, build or reuse its venv, sync the weights. Idempotent."""
    from ..bundle import check_job_inputs
    from ..deploy import deploy as run_deploy

    found_job, target = app.inventory.resolve(job, instance)
    check_job_inputs(found_job)  # bad input exits 2 here, before the instance is touched
    s3 = app.inventory.s3_settings(found_job, target)
    with connected(target) as transport:
        driver = _preflight_gate(transport, found_job, target, s3, force)
        result = run_deploy(transport, target, found_job, s3=s3, driver_version=driver,
                            sync_weights=not no_weights, progress=not app.json, say=say)
    if app.json:
        emit_json({"ok": True, **result.to_json()})
        return
    for step in result.steps:
        say(f"  {step}")
    say(f"deployed {found_job.name} to {target.name} in {result.seconds:.1f} s "
        f"({result.payload_bytes_sent} payload bytes sent)", style="green")


@cli.command()
@click.argument("job", required=False)
@click.option("--instance", help="Instance name from the inventory.")
@click.option("--follow", "-f", is_flag=True, help="Stream the log and a live step/loss line (Ctrl-C stops following, never the run).")
@click.option("--resume", is_flag=True, help="Continue the job's latest run from its last checkpoint.")
@click.option("--extra-epochs", type=click.IntRange(1), help="Train this many epochs beyond the recipe's.")
@click.option("--force", is_flag=True, help="Train even when preflight fails.")
@common
def train(app: App, job, instance, follow, resume, extra_epochs, force):
    """Start training detached from this session: it survives disconnects and this process exiting."""
    from ..bundle import check_job_inputs
    from ..deploy import deploy as run_deploy
    from ..runs import start_training

    found_job, target = app.inventory.resolve(job, instance)
    check_job_inputs(found_job)  # bad input exits 2 here, before the instance is touched
    s3 = app.inventory.s3_settings(found_job, target)
    with connected(target) as transport:
        driver = _preflight_gate(transport, found_job, target, s3, force)
        deployed = run_deploy(transport, target, found_job, s3=s3, driver_version=driver, progress=not app.json,
                              say=say)
        started = start_training(transport, target, found_job, deployed, resume=resume, extra_epochs=extra_epochs)
        say(f"run {started.run_id} {'resumed' if resume else 'started'} on {target.name} (pid {started.pid})",
            style="green")
        if not app.json:
            print(started.run_id, flush=True)
        doc = {"ok": True, "run_id": started.run_id, "run_dir": started.run_dir, "instance": target.name,
               "job": found_job.name, "resumed": resume, "deploy": deployed.to_json()}
        if not follow:
            if app.json:
                emit_json(doc)
            else:
                say(f"follow it with `orch logs --run {started.run_id} --follow`")
            return
        final = _follow(app, target, started.run_dir, started.run_id, transport=transport,
                        payload_dir=deployed.bundle_dir)
    doc.update(state=final["state"], exit_code=final["exit_code"], ok=final["state"] == "finished")
    if app.json:
        emit_json(doc)
    if final["state"] != "finished":
        say(f"run {started.run_id} {final['state']} (exit code {final['exit_code']})", style="bold red")
        sys.exit(1)


def _follow(app: App, target, run_dir: str, run_id: str, offset: int = 0, follow: bool = True,
            transport=None, payload_dir: str | None = None) -> dict:
    """Stream the run's log (stdout, or stderr with --json) and a live metrics line, until it ends."""
    from ..runs import follow as stream
    from ..transport import connect

    first = [transport] if transport is not None else []

    def transport_factory():  # the open connection first; a new one after a drop
        return first.pop() if first else connect(target)

    out = sys.stderr if app.json else sys.stdout
    live = _LiveLine(enabled=not app.json and console().is_terminal)

    def on_log(text: str) -> None:
        live.clear()
        out.write(text)
        out.flush()
        live.draw()

    try:
        final, reached = stream(transport_factory, target, run_dir, offset=offset, follow=follow,
                                on_log=on_log, on_metric=live.update, payload_dir=payload_dir)
    except KeyboardInterrupt:
        live.clear()
        say(f"stopped following; run {run_id} goes on. Re-attach: orch logs --run {run_id} --follow",
            style="yellow")
        sys.exit(130)
    live.clear()
    return {**final, "offset": reached}  # the log's byte offset reached: `orch logs --offset` resumes there


class _LiveLine:
    """One status line (step, loss, rate) kept at the bottom of a terminal while the log scrolls."""

    def __init__(self, enabled: bool):
        self.enabled, self.text = enabled, ""

    def update(self, metric: dict) -> None:
        if metric.get("event", "step") != "step":
            return                      # attempt markers and the final summary are not progress lines
        parts = [f"step {metric.get('step')}"]
        for key, fmt in (("epoch", "epoch {:.2f}"), ("loss", "loss {:.4f}"), ("samples_per_second", "{:.1f} samples/s"),
                         ("tokens_per_second", "{:.0f} tok/s")):
            if isinstance(metric.get(key), (int, float)):
                parts.append(fmt.format(metric[key]))
        self.clear()
        self.text = " | ".join(parts)
        self.draw()

    def draw(self) -> None:
        if self.enabled and self.text:
            sys.stderr.write(f"\r\x1b[2K\x1b[1m{self.text}\x1b[0m")
            sys.stderr.flush()

    def clear(self) -> None:
        if self.enabled and self.text:
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()


@cli.command()
@click.argument("job", required=False)
@click.option("--instance", help="Instance name from the inventory.")
@click.option("--run", "run_id", help="One run (default: every run on the instance).")
@common
def status(app: App, job, instance, run_id):
    """Runs on an instance: running / finished / failed / stopped / lost."""
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
                     loss, "" if r["heartbeat_age_s"] is None else f"{r['heartbeat_age_s']:.0f} s ago",
                     "yes" if r["has_adapter"] else ""))
    table(f"runs on {target.name}", ["run", "state", "exit", "step", "loss", "heartbeat", "adapter"], rows)
    for r in runs:
        if r["state"] == "unknown":
            say(f"  {r['run_id']}: state unknown: {r.get('reason')}", style="yellow")


@contextmanager
def run_on_instance(app: App, job, instance, run_id):
    """Connect once, find the run a command means (`--run`, else the latest), and keep the connection."""
    from ..runs import find_run

    found_job, target = app.inventory.resolve(job, instance, need_job=False, run_id=run_id)
    with connected(target) as transport:
        run = find_run(transport, target, job=found_job.name if found_job and job else None, run_id=run_id)
        yield found_job, target, run, transport


@cli.command()
@click.argument("job", required=False)
@click.option("--instance", help="Instance name from the inventory.")
@click.option("--run", "run_id", help="Run id (default: the latest run).")
@click.option("--follow", "-f", is_flag=True, help="Keep streaming until the run ends.")
@click.option("--offset", type=click.IntRange(0), default=0, help="Start at this byte of the log.")
@common
def logs(app: App, job, instance, run_id, follow, offset):
    """Print a run's log; --follow re-attaches by byte offset, so no line is lost or repeated."""
    with run_on_instance(app, job, instance, run_id) as (_, target, run, transport):
        final = _follow(app, target, run["run_dir"], run["run_id"], offset=offset, follow=follow,
                        transport=transport, payload_dir=(run.get("meta") or {}).get("payload"))
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
