"""`orch`: the command line. Errors are raised in the code and shown here, once, without a traceback.

Exit codes: 0 success, 1 a check or job failed, 2 bad input (usage, inventory, .env, recipe, dataset).
With --json, stdout carries exactly one JSON document (also on failure); humans read stderr.
"""

from __future__ import annotations

import functools
import os
import sys
import traceback

import click

from . import __version__
from .errors import OrchError
from .output import emit_json, say


class App:
    """What every command shares: the inventory (loaded once, on first use) and the output mode."""

    def __init__(self, inventory: str | None, env_file: str | None, verbose: int, as_json: bool):
        self.inventory_path, self.env_file = inventory, env_file
        self.verbose, self.json = verbose, as_json
        self._inventory = None

    @property
    def inventory(self):
        if self._inventory is None:
            from .inventory import load_inventory

            self._inventory = load_inventory(self.inventory_path, self.env_file)
        return self._inventory


def common(f):
    """Options every command accepts (also before the command name): --inventory, --env-file, --json, -v."""

    @click.option("--inventory", "inventory_path", type=click.Path(dir_okay=False), envvar="ORCH_INVENTORY",
                  help="Inventory file [default: ./inventory.yaml].")
    @click.option("--env-file", type=click.Path(dir_okay=False), help="Variables file [default: .env beside the inventory].")
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
    @click.option("-v", "--verbose", count=True, help="More detail; tracebacks on errors.")
    @click.pass_context
    @functools.wraps(f)
    def wrapper(ctx, inventory_path, env_file, as_json, verbose, **kwargs):
        root = ctx.find_root().params
        app = App(inventory_path or root.get("inventory_path"), env_file or root.get("env_file"),
                  verbose + (root.get("verbose") or 0), as_json or bool(root.get("as_json")))
        return f(app, **kwargs)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--inventory", "inventory_path", type=click.Path(dir_okay=False), envvar="ORCH_INVENTORY",
              help="Inventory file [default: ./inventory.yaml].")
@click.option("--env-file", type=click.Path(dir_okay=False), help="Variables file [default: .env beside the inventory].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
@click.option("-v", "--verbose", count=True, help="More detail; tracebacks on errors.")
@click.version_option(__version__, prog_name="orch")
def cli(inventory_path, env_file, as_json, verbose):
    """Drive your own GPU instances over SSH: preflight, deploy, train, fetch the adapter."""


@cli.command()
@click.argument("job", required=False)
@click.option("--instance", help="Instance name from the inventory.")
@common
def show(app: App, job: str | None, instance: str | None):
    """Show how an instance's settings resolve, and where each value came from (secrets masked)."""
    from dataclasses import asdict

    from .recipe_files import recipe_doc, resolve_job_recipe, show_recipe

    inv = app.inventory
    found_job, target = inv.resolve(job, instance, need_job=False)
    settings = {k: v for k, v in asdict(target).items() if k != "origins"}
    s3 = inv.s3_settings(found_job, target).shown()
    job_doc = {k: v for k, v in asdict(found_job).items() if k != "origins"} if found_job else None
    doc = {"instance": settings, "origins": target.origins, "job": job_doc, "s3": s3,
           "recipe": recipe_doc(resolve_job_recipe(found_job)) if found_job else None}
    if app.json:
        emit_json(doc)
        return
    rows = [(k, v, target.origins.get(k, "default")) for k, v in settings.items()
            if k not in ("expect", "name", "hops")]
    rows += [(f"jump {i + 1} ({hop.role})", hop.address, hop.origin("host")) for i, hop in enumerate(target.hops)]
    rows += [(f"expect.{k}", v, target.origins.get(f"expect.{k}", "default")) for k, v in settings["expect"].items()]
    from .output import table

    table(f"instance {target.name} ({inv.path})", ["setting", "value", "from"], rows)
    if found_job:
        table(f"job {found_job.name}", ["setting", "value", "from"],
              [(k, v, found_job.origins.get(k, "default")) for k, v in job_doc.items()])
        show_recipe(doc["recipe"])
    origins = s3.pop("origins")
    table("S3 (controller side)", ["setting", "value", "from"],
          [(k, "" if v is None else v, origins.get(k, "not set")) for k, v in s3.items()])


def _register_commands() -> None:
    """Every module of `orchestrator.commands` registers its commands on `cli` when imported: adding a command
    is adding a module there, never editing this file."""
    import importlib
    import pkgutil

    from . import commands

    for module in sorted(m.name for m in pkgutil.iter_modules(commands.__path__)):
        importlib.import_module(f"{commands.__name__}.{module}")


def _report(exc: OrchError, as_json: bool, verbose: bool) -> int:
    if verbose:
        traceback.print_exc()
    say(f"error: {exc.message}", style="bold red")
    if exc.hint:
        say(f"  hint: {exc.hint}", style="yellow")
    if as_json:
        emit_json({"ok": False, **exc.to_json()})
    return exc.exit_code


def main(argv: list[str] | None = None) -> int:
    from .output import mask_process_output

    mask_process_output()   # the one output path: whatever is printed from here on is masked
    args = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in args
    verbose = any(a in ("-v", "-vv", "--verbose") for a in args) or bool(os.environ.get("ORCH_DEBUG"))
    try:
        _register_commands()
        code = cli.main(args=args, prog_name="orch", standalone_mode=False)
        return code if isinstance(code, int) else 0
    except OrchError as exc:
        return _report(exc, as_json, verbose)
    except click.exceptions.Abort:
        say("aborted")
        return 130
    except click.ClickException as exc:
        exc.show()
        if as_json:
            emit_json({"ok": False, "error": exc.format_message(), "exit_code": exc.exit_code, "kind": "UsageError"})
        return exc.exit_code
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    except Exception as exc:  # a bug in orch: say so plainly, show the traceback only with -v
        if verbose:
            traceback.print_exc()
        say(f"internal error: {type(exc).__name__}: {exc} (run with -v for the traceback, and please report it)",
            style="bold red")
        if as_json:
            emit_json({"ok": False, "error": f"{type(exc).__name__}: {exc}", "exit_code": 1, "kind": "InternalError"})
        return 1


def run() -> None:
    """Console-script entry point."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)
