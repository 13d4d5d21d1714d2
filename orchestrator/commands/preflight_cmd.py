"""`orch preflight` (is the box the right one, and ready?) and `orch trust` (record its SSH host key)."""

from __future__ import annotations

import click

from ..cli import App, cli, common
from ..errors import InputError
from ..output import console, emit_json, say
from ..settings import mask


def _unresolved_report(name: str, exc: InputError):
    from ..preflight import Check, PreflightReport

    return PreflightReport(name, "?", checks=[Check("settings", False, exc.message, exc.hint)], error=str(exc),
                           exit_code=exc.exit_code, exception=exc)


def _bound_job(inventory, instance_name: str):
    bound = [j for j in inventory.jobs.values() if j.instance == instance_name]
    return bound[0] if len(bound) == 1 else None


@cli.command()
@click.argument("job", required=False)
@click.option("--instance", help="Instance name from the inventory.")
@click.option("--all", "all_instances", is_flag=True, help="Check every instance in the inventory, in parallel.")
@common
def preflight(app: App, job, instance, all_instances):
    """Check that the instance is the right box and ready: GPU, VRAM, disk, python3, nothing else running.

    One SSH connection and one probe round trip per instance. Exit 0 when every check passes, 1 when one
    fails or an instance cannot be reached, 2 on bad input.
    """
    from ..preflight import run_many

    inventory = app.inventory
    unresolved = []
    if all_instances:
        if job or instance:
            raise InputError("--all checks every instance: drop the job name and --instance")
        names = inventory.instance_names
        if not names:
            raise InputError(f"no instances in {inventory.path}")
        targets = []
        for name in names:
            try:
                target, bound = inventory.instance(name), _bound_job(inventory, name)
                targets.append((target, bound, inventory.s3_settings(bound, target) if bound else None))
            except InputError as exc:  # e.g. its .env variable is missing: report it, check the others
                unresolved.append(_unresolved_report(name, exc))
    else:
        found_job, target = inventory.resolve(job, instance, need_job=False)
        targets = [(target, found_job, inventory.s3_settings(found_job, target) if found_job else None)]
    reports = run_many(targets) if targets else []
    if unresolved:
        order = {name: i for i, name in enumerate(names)}
        reports = sorted(reports + unresolved, key=lambda r: order.get(r.instance, len(order)))
    if len(reports) == 1 and isinstance(reports[0].exception, InputError):
        raise reports[0].exception   # bad input (e.g. a missing key file): one clear message, exit 2
    if app.json:
        emit_json({"instances": [r.to_json() for r in reports], "ok": all(r.ok for r in reports)})
    else:
        for report in reports:
            _show(report, verbose=app.verbose)
    return max(r.exit_code for r in reports)


def _show(report, *, verbose: int = 0) -> None:
    from rich.table import Table
    from rich.text import Text

    out = console()
    table = Table(title=mask(f"{report.instance} ({report.address})"), title_justify="left", show_lines=False)
    table.add_column("check")
    table.add_column("", justify="center")
    table.add_column("detail", overflow="fold")
    for check in report.checks:
        mark = Text("PASS", style="green") if check.ok else Text("FAIL", style="bold red")
        table.add_row(mask(check.name), mark, mask(check.detail))
    if report.checks:
        out.print(table)
    for check in report.failed:
        if check.fix:
            say(f"  {check.name}: {check.fix}", style="yellow")
    if report.error and not report.failed:
        say(f"error: {report.error}", style="bold red")
    if report.ok:
        say(f"{report.instance}: ready ({report.seconds * 1000:.0f} ms)", style="bold green")
    else:
        n = len(report.failed)
        what = f"{n} check{'s' if n != 1 else ''} failed" if n else "could not be checked"
        say(f"{report.instance}: NOT READY, {what}", style="bold red")
    if verbose and report.probe:
        import json

        say(json.dumps(report.probe, indent=2))


@cli.command()
@click.argument("job", required=False)
@click.option("--instance", help="Instance name from the inventory.")
@click.option("--replace", is_flag=True, help="Replace a recorded key that no longer matches (after a rebuild).")
@click.option("--fingerprint", metavar="SHA256:...", help="Record the key only if it has this fingerprint "
                                                          "(e.g. from the EC2 console output).")
@common
def trust(app: App, job, instance, replace, fingerprint):
    """Fetch the instance's SSH host key (no login) and record it in its known_hosts file.

    Behind bastions (`jump:` or ProxyJump), each bastion's key is recorded first, naming the hop, and the
    instance's key is fetched through them."""
    from ..transport.trust import trust_chain

    _, target = app.inventory.resolve(job, instance, need_job=False)
    if target.transport != "ssh":
        from ..hostkeys import trust as trust_one

        trust_one(target, lambda: None)   # raises: there is no host key to trust
    results = trust_chain(target, replace=replace, fingerprint=fingerprint)
    result = results[-1]
    if app.json:
        emit_json({"ok": True, **result.to_json(), "hops": [r.to_json() for r in results[:-1]]})
        return 0
    for one in results:
        _say_trusted(one)
    return 0


def _say_trusted(result) -> None:
    messages = {
        "added": f"recorded {result.key_type} {result.fingerprint} for {result.instance} ({result.address}) "
                 f"in {result.file}",
        "replaced": f"replaced the recorded key of {result.instance} ({result.address}) with {result.key_type} "
                    f"{result.fingerprint} in {result.file}",
        "already-known": f"{result.instance} ({result.address}): {result.key_type} {result.fingerprint} is already "
                         f"recorded in {result.file}",
        "matches-pinned": f"{result.instance} ({result.address}): {result.key_type} {result.fingerprint} matches "
                          f"the pinned host_key; nothing to record",
    }
    say(messages[result.status], style="green")
    if result.status in ("added", "replaced"):
        say("  compare this fingerprint with the one the instance printed at boot (EC2 console output) "
            "if you have not already", style="dim")
