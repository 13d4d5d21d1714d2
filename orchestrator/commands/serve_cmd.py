"""`orch serve [JOB] [--run ID | --export PATH]` and `orch serve status|logs|stop` (see orchestrator/serving.py)."""

from __future__ import annotations

import sys

import click

from ..cli import App, cli, common
from ..errors import InputError
from ..output import emit_json, say
from .session import connected


class ServeGroup(click.Group):
    """`orch serve ARGS` is `orch serve up ARGS` unless ARGS start with up, status, logs or stop (or are --help)."""

    def parse_args(self, ctx, args):
        if args != ["--help"] and args != ["-h"] and (not args or args[0] not in self.commands):
            args = ["up", *args]
        return super().parse_args(ctx, args)


@cli.group("serve", cls=ServeGroup)
def serve():
    """Serve a run's export with vLLM (+ the /generate API) on the instance; `orch serve status|logs|stop`.

    `orch serve JOB` serves the latest run's export (exporting it first when it has none); reach it with
    `orch tunnel`."""


@serve.command("up")
@click.argument("job", required=False)
@click.option("--instance", help="Instance name from the inventory.")
@click.option("--run", "run_id", help="Run id (default: the latest run).")
@click.option("--export", "export_path", metavar="PATH", help="Serve this export directory on the instance "
                                                              "instead of a run's.")
@click.option("--format", "label", type=click.Choice(["lora", "merged", "merged-w4a16"]),
              help="Which of the run's exports [default: lora, else merged, else merged-w4a16; none: export lora].")
@click.option("--base", metavar="PATH", help="Base model directory on the instance, for a lora --export "
                                             "[default: the run's].")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True,
              help="vLLM's port on the instance's 127.0.0.1.")
@click.option("--api-port", type=click.IntRange(1, 65535), default=8080, show_default=True,
              help="The /generate API's port on the instance's 127.0.0.1.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="vLLM's device (auto: cuda when preflight finds a GPU).")
@click.option("--max-model-len", type=click.IntRange(16), help="Context length vLLM reserves memory for.")
@click.option("--wait", type=click.FloatRange(1), default=900.0, show_default=True,
              help="Seconds to wait for /health.")
@click.option("--bench", is_flag=True, help="Then measure p50/p90 latency and tokens/s, as `orch serve bench` "
                                           "does with its defaults (32 and 512 output tokens).")
@click.option("--bench-requests", type=click.IntRange(1), default=10, show_default=True,
              help="With --bench: requests per class (short, long).")
@click.option("--force", is_flag=True, help="Serve even when preflight fails.")
@common
def up(app: App, job, instance, run_id, export_path, label, base, port, api_port, device, max_model_len, wait,
       bench, bench_requests, force):
    """Serve a run's export (or --export PATH) on the instance."""
    from ..serving import ServeRequest, resolve_device, serve_preflight, serve_up

    request = ServeRequest(port, api_port, device, max_model_len, wait)
    if export_path and label:
        raise InputError("--export PATH and --format pick the export two ways", hint="give one of them")
    found_job, target = app.inventory.resolve(job, instance, need_job=False, run_id=run_id)
    with connected(target) as transport:
        report = serve_preflight(transport, target, force, say)
        run = None
        if not export_path or not base:
            run = _find(transport, target, found_job, job, run_id, required=not export_path)
        if not export_path:
            export_path = _run_export(transport, target, run, label)
        base = base or ((run or {}).get("meta") or {}).get("model_dir")
        doc = serve_up(transport, target, export_path, base, request, resolve_device(device, report), say)
        if bench:
            from ..serving import run_bench

            doc["bench"] = run_bench(transport, target, doc, bench_requests, 32, 512, say)
    doc = {"ok": True, "instance": target.name, "run_id": (run or {}).get("run_id"), **doc}
    if app.json:
        emit_json(doc)
        return
    say(f"{doc['served_name']} ({doc['kind']}) served on {target.name} in {doc.get('seconds')} s: vLLM "
        f"{doc['vllm_url']}, API {doc['api_url']} (instance-local); reach them with `orch tunnel --instance "
        f"{target.name}`", style="green")
    if doc.get("bench"):
        _show_bench(doc["bench"])


def _find(transport, target, found_job, job, run_id, required: bool):
    from ..runs import find_run

    try:
        return find_run(transport, target, job=found_job.name if found_job and job else None, run_id=run_id)
    except InputError:
        if required:
            raise
        return None


def _run_export(transport, target, run: dict, label: str | None) -> str:
    """The run's export to serve; a run with none is exported first (lora) -- or refused with the reason."""
    from ..exports import ExportRequest, existing_exports, export_run
    from ..serving import choose_export

    have = existing_exports(transport, target, run)
    chosen = choose_export(have, label)
    if chosen:
        return f"{run['run_dir']}/exports/{chosen}"
    fmt = (label or "lora").split("-")[0]
    request = ExportRequest(fmt, "w4a16" if label == "merged-w4a16" else None)
    say(f"run {run['run_id']} has no {label or 'export'} yet: exporting it first ({request.label})")
    return export_run(transport, target, run, request, say)["path"]


def _show_bench(bench: dict) -> None:
    from ..output import table

    rows = [(name, r.get("max_new_tokens"), r.get("requests"), r.get("p50_s"), r.get("p90_s"), r.get("tokens_per_s"))
            for name, r in bench.items() if isinstance(r, dict) and "p50_s" in r]
    table(f"latency of {bench.get('model')} ({bench.get('method')})",
          ["answers", "max_new_tokens", "requests", "p50 s", "p90 s", "tokens/s"], rows)


@serve.command("bench")
@click.argument("job", required=False)
@click.option("--instance", help="Instance name from the inventory.")
@click.option("--requests", type=click.IntRange(1), default=10, show_default=True, help="Requests per class.")
@click.option("--short-tokens", type=click.IntRange(1), default=32, show_default=True)
@click.option("--long-tokens", type=click.IntRange(1), default=512, show_default=True)
@common
def bench(app: App, job, instance, requests, short_tokens, long_tokens):
    """p50/p90 latency and tokens/s of what is served, for short and long answers (temperature 0, fixed
    max_new_tokens: seed 001's method), measured on the instance."""
    from ..serving import run_bench, serve_action

    _, target = app.inventory.resolve(job, instance, need_job=False)
    with connected(target) as transport:
        doc = run_bench(transport, target, serve_action(transport, target, "status"), requests, short_tokens,
                        long_tokens, say)
    if app.json:
        emit_json({"ok": True, "instance": target.name, **doc})
    else:
        _show_bench(doc)


def _on_instance(app: App, job, instance, action: str, **options):
    """(the instance, `remote_payload.serve ACTION`'s answer there) for status, logs and stop."""
    from ..serving import serve_action

    _, target = app.inventory.resolve(job, instance, need_job=False)
    with connected(target) as transport:
        return target, serve_action(transport, target, action, **options)


@serve.command("status")
@click.option("--instance", help="Instance name from the inventory.")
@click.argument("job", required=False)
@common
def status(app: App, job, instance):
    """What is served on the instance: each process's state and restarts, and /health."""
    target, doc = _on_instance(app, job, instance, "status")
    if app.json:
        emit_json({"ok": bool(doc.get("healthy")), "instance": target.name, **doc})
    else:
        procs = doc.get("processes") or {}
        say(f"{doc.get('served_name')} ({doc.get('kind')}) on {target.name} via {doc.get('manager')}: "
            f"{'healthy' if doc.get('healthy') else 'UNHEALTHY: ' + str((doc.get('health') or {}).get('reason'))}"
            + "".join(f"; {p} {s.get('state')} (restarts {s.get('restarts')})" for p, s in procs.items()),
            style="green" if doc.get("healthy") else "bold red")
    if not doc.get("healthy"):
        sys.exit(1)


@serve.command("logs")
@click.argument("job", required=False)
@click.option("--instance", help="Instance name from the inventory.")
@click.option("--process", type=click.Choice(["vllm", "api"]), default="vllm", show_default=True)
@click.option("--lines", type=click.IntRange(1), default=200, show_default=True)
@common
def logs(app: App, job, instance, process, lines):
    """The last lines of vLLM's (or the API's) log on the instance."""
    target, text = _on_instance(app, job, instance, "logs", process=process, lines=lines)
    if app.json:
        emit_json({"ok": True, "instance": target.name, "process": process, "log": text})
    else:
        print(text)


@serve.command("stop")
@click.argument("job", required=False)
@click.option("--instance", help="Instance name from the inventory.")
@common
def stop(app: App, job, instance):
    """Stop vLLM and the API on the instance."""
    target, doc = _on_instance(app, job, instance, "stop")
    if app.json:
        emit_json({"ok": True, "instance": target.name, **doc})
    else:
        say(f"stopped {doc.get('served_name')} on {target.name}", style="green")
