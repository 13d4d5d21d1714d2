"""`orch validators install|check`: the IaC validators' own venv on this machine, and checking files with it.

The venv lives in $ORCH_VALIDATORS_DIR/<requirements hash>/ (default ~/.cache/orch/validators/); the work is
done by the payload's stdlib-only package remote_payload/iac, the same code an instance runs.
"""

from __future__ import annotations

import click

from ..cli import App, cli, common
from ..errors import InputError, OrchError
from ..output import emit_json, human_bytes, say, table


@cli.group("validators")
def validators():
    """IaC validators (terraform, checkov, cfn-lint, kubernetes-validate, helm, orch-hcl-lint) in their own venv."""


def _payload_error(exc) -> OrchError:
    error = InputError if exc.exit_code == 2 else OrchError
    return error(exc.message, hint=exc.hint)


@validators.command("install")
@click.option("--force", is_flag=True, help="Rebuild even when a complete venv is already there.")
@common
def install_cmd(app: App, force: bool):
    """Build the validators venv on this machine (~1 GB, a few minutes; reused while requirements are unchanged).

    Installing on an instance is `python3 -m remote_payload.iac.install --root DIR` from a deployed bundle.
    """
    from remote_payload.errors import PayloadError
    from remote_payload.iac.install import install

    try:
        result = install(force=force, say=lambda message: say(message))
    except PayloadError as exc:
        raise _payload_error(exc) from None
    if app.json:
        emit_json({"ok": True, **result})
        return
    say(f"validators {result['status']} in {result['venv']} ({human_bytes(result['size_bytes'])}, "
        f"built in {result['install_seconds']} s)", style="green")
    table("versions", ["validator", "version"], result.get("versions", {}).items())
    for note in result.get("notes", []):
        say(f"note: {note}", style="yellow")


def show_iac_report(doc: dict) -> None:
    """The IaC report as tables: per kind, each validator's pass rate, the gates, failures, what was not checked."""
    for kind, part in doc["kinds"].items():
        rows = [(name, "-" if r["pass_rate"] is None else f"{r['pass_rate'] * 100:.0f}%", r["passed"], r["failed"],
                 r["unchecked"]) for name, r in part["validators"].items()]
        table(f"{kind}: {part['answers']} answer(s)", ["validator", "pass rate", "pass", "fail", "not checked"], rows)
        for gate in part["gates"]:
            style = {"pass": "green", "fail": "bold red"}.get(gate["status"], "yellow")
            say(f"  gate {gate['gate']}: {gate['status'].upper()} ({gate['detail']}; threshold {gate['threshold']})",
                style=style)
        for failure in part["failures"]:
            say(f"  FAIL {failure['answer']} [{failure['validator']}]", style="red")
            for message in failure["messages"]:
                say(f"      {message}")
        for note in part["not_checked"]:
            say(f"  not checked ({note['answers']} answer(s), {note['validator']}): {note['what']}", style="yellow")
    say("versions: " + "; ".join(f"{k} {v}" for k, v in doc["versions"].items()))
    say(f"terraform binary: {doc['terraform_binary']}")
    say(f"{'PASS' if doc['ok'] else 'FAIL'}: {doc['reason']}", style="bold green" if doc["ok"] else "bold red")


@validators.command("check")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--kind", help="terraform | cloudformation | kubernetes | helm | pulumi [default: guessed per path].")
@common
def check_cmd(app: App, paths: tuple[str, ...], kind: str | None):
    """Validate IaC files or folders (a folder is one answer: a Terraform module, a Helm chart, manifests).

    Prints each validator's pass rate, seed 001's gates, every failure with the tool's message, the tool
    versions and what could not be checked offline. Exit 0 when every gate passes, 1 when one fails,
    2 on bad input or when the validators are not installed (`orch validators install`).
    """
    from remote_payload.errors import PayloadError
    from remote_payload.iac.suite import check_paths

    try:
        doc = check_paths(paths, kind, say=lambda message: say(message))
    except ValueError as exc:
        raise InputError(str(exc)) from None
    except PayloadError as exc:
        raise _payload_error(exc) from None
    if app.json:
        emit_json(doc)
    else:
        show_iac_report(doc)
    return 0 if doc["ok"] else 1
