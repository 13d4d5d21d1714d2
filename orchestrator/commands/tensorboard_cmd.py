"""`orch tensorboard [JOB]`: TensorBoard over a job's runs, on the instance, reached from here through the
connection orch already has -- or, with `--local DIR`, over runs fetched into DIR.

On the instance, `python -m remote_payload.board` (from the deployed payload, with the training venv: TensorBoard
is one of its pins) serves every matching run's `tensorboard/` under its run id, bound to the instance's
127.0.0.1 on a free port, and prints one JSON line {"url", "host", "port", "pid", "runs"}; a local port
(`--port`, 6006 by default) is forwarded to it through the transport (transport/forward.py: direct-tcpip over
the one SSH connection; nothing is opened on the instance). The board lives as long as its stdin: Ctrl-C here
closes it, the board exits, the forward stops -- and a dropped connection ends it the same way, so no stale
TensorBoard is ever left behind (seed 003's page of "No dashboards are active" troubleshooting).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..cli import App, cli, common
from ..errors import InputError, RemoteError
from ..output import emit_json, say
from .session import connected

STARTUP_S = 120.0          # importing TensorBoard and loading the event files, on a busy instance
POLL_S = 1.0               # how often the wait wakes up (Ctrl-C, a dropped connection)


def board_argv(python: str, runs_dirs: list[str], job: str | None, run_ids: tuple[str, ...]) -> list[str]:
    argv = [python, "-m", "remote_payload.board"]
    for folder in runs_dirs:
        argv += ["--runs-dir", folder]
    argv += ["--job", job] if job else []
    for run_id in run_ids:
        argv += ["--run", run_id]
    return argv + ["--port", "0"]


def start_board(transport, argv: list[str], cwd: str | None, where: str):
    """(process, its first line): TensorBoard serving; InputError when no run has logs (the board's exit 2)."""
    from ..transport.base import Stalled

    proc = transport.open(argv, cwd=cwd)
    proc.set_timeout(STARTUP_S)
    try:
        first = proc.readline()
    except Stalled:
        proc.kill()
        raise RemoteError(f"{where}: TensorBoard did not start within {STARTUP_S:.0f} s: "
                          f"{proc.stderr_text().strip()[-600:] or '(no output)'}") from None
    except BaseException:            # Ctrl-C while it starts: it must not outlive this command
        proc.kill()
        raise
    if not first:
        code = proc.wait(30)
        err = proc.stderr_text().strip()
        if code == 2:   # "board: <message>" and maybe "  hint: <hint>" (remote_payload/board.py)
            lines = [line.strip() for line in err.splitlines()]
            message = next((line[len("board: "):] for line in lines if line.startswith("board: ")), err or "no runs")
            hint = next((line[len("hint: "):] for line in lines if line.startswith("hint: ")), None)
            raise InputError(f"{where}: {message}", hint=hint or "name a run with TensorBoard logs (`orch status` "
                                                              "lists them), or train one")
        raise RemoteError(f"{where}: TensorBoard exited with {code}: {err[-800:] or '(no output)'}")
    try:
        return proc, json.loads(first)
    except ValueError:
        proc.kill()
        raise RemoteError(f"{where}: TensorBoard's first line is not its address: {first[:200]!r}") from None


def serve(app: App, transport, argv: list[str], cwd: str | None, port: int, where: str) -> None:
    """Start the board, forward a local port to it, and keep both until Ctrl-C (or the board ends)."""
    from ..transport.forward import Forward

    proc, info = start_board(transport, argv, cwd, where)
    try:
        try:
            forward = Forward(transport, info["port"], local_port=port).start()
        except InputError as exc:
            raise InputError(exc.message, hint="choose another --port (0 picks a free one)") from None
        try:
            url = f"http://127.0.0.1:{forward.local_port}/"
            runs = [r["run_id"] for r in info.get("runs") or []]
            if app.json:
                emit_json({"ok": True, "url": url, "local_port": forward.local_port, "remote_port": info["port"],
                           "remote_pid": info.get("pid"), "where": where, "runs": runs})
            else:
                print(url, flush=True)
            say(f"TensorBoard on {where} over {len(runs)} run(s) ({', '.join(runs)}) at {url} -- Ctrl-C stops it",
                style="green")
            _wait_for_end(proc, where)
        except KeyboardInterrupt:
            say(f"stopping TensorBoard on {where}")
        finally:
            forward.stop()
    finally:
        _end(proc)


def _wait_for_end(proc, where: str) -> None:
    """Until Ctrl-C: the board writes nothing more on stdout, so its stdout ending means it ended."""
    from ..transport.base import Stalled

    proc.set_timeout(POLL_S)          # wake up now and then: Ctrl-C and a dropped connection are seen at once
    try:
        while True:
            try:
                if not proc.read(65536):
                    break
            except Stalled:
                continue
    except ConnectionError:
        raise RemoteError(f"{where}: the connection was lost; TensorBoard on the instance ended with it",
                          hint="run `orch tensorboard` again") from None
    raise RemoteError(f"{where}: TensorBoard ended by itself: {proc.stderr_text().strip()[-600:] or '(no output)'}")


def _end(proc) -> None:
    """Closing its stdin ends the board (remote_payload/board.py); a board that lingers is killed."""
    try:
        proc.close_stdin()
        proc.wait(15)
    except Exception:  # noqa: BLE001 - a connection already gone, a board that ignored the EOF: kill it
        proc.kill()


def local_runs_dirs(folder: Path, job: str | None) -> list[str]:
    """The runs folders of a fetch destination (DEST/<job>/<run id>/): DIR/JOB, or every job's folder; DIR itself
    when it holds runs directly."""
    if not folder.is_dir():
        raise InputError(f"--local {folder}: not a folder",
                         hint="name a fetch destination (`orch fetch-adapter --dest`)")
    if any((child / "tensorboard").is_dir() for child in folder.iterdir()):
        return [str(folder)]
    if job:
        if not (folder / job).is_dir():
            raise InputError(f"no fetched runs of job {job} in {folder}",
                             hint=f"fetch one: `orch fetch-adapter {job} --dest {folder}`")
        return [str(folder / job)]
    dirs = [str(child) for child in sorted(folder.iterdir()) if child.is_dir() and not child.name.startswith(".")]
    if not dirs:
        raise InputError(f"no fetched runs in {folder}", hint="fetch one: `orch fetch-adapter JOB --dest DIR`")
    return dirs


def payload_python_for_board(remote, instance, job_name: str | None) -> str:
    """The training env's interpreter, after making sure the current payload is on the instance. A venv is never
    built here: one that is missing means nothing was deployed with this payload's pins."""
    from ..bundle import requirements_hash
    from ..layout import payload_python

    venv = None if instance.python_env else remote.layout.venv(requirements_hash())
    installed = remote.install({"payload": (remote.payload_dir, remote.payload)}, report_venv=venv,
                               holder={"job": job_name, "what": "tensorboard"}, say=say)
    if venv and installed.venv != "present":
        raise InputError(f"{instance.name}: no training venv {venv} yet (TensorBoard runs from it)",
                         hint=f"deploy first: `orch deploy {job_name or 'JOB'}`")
    return payload_python(instance, requirements_hash())


@cli.command("tensorboard")
@click.argument("job", required=False)
@click.option("--instance", help="Instance name from the inventory.")
@click.option("--run", "run_ids", multiple=True, metavar="ID", help="Only this run (repeatable) [default: every run "
                                                                     "of JOB, or of the instance].")
@click.option("--port", type=click.IntRange(0, 65535), default=6006, show_default=True,
              help="Local port to open TensorBoard on (0: a free one).")
@click.option("--local", "local_dir", type=click.Path(file_okay=False), metavar="DIR",
              help="Serve runs fetched into DIR (`orch fetch-adapter --dest DIR`) on this machine instead.")
@common
def tensorboard(app: App, job, instance, run_ids, port, local_dir):
    """TensorBoard over a job's runs (compare them side by side), on the instance through the SSH connection, or
    over fetched runs with --local. Runs until Ctrl-C, which stops it on the instance too."""
    if local_dir:
        if instance:
            raise InputError("--local serves fetched runs on this machine: it takes no --instance")
        from importlib.util import find_spec

        from ..transport.local import LocalTransport

        if find_spec("tensorboard") is None:
            raise InputError("--local needs TensorBoard on this machine",
                             hint="pip install tensorboard (it is in orch's `payload` extra)")
        argv = board_argv(sys.executable, local_runs_dirs(Path(local_dir), job), job, run_ids)
        serve(app, LocalTransport("local"), argv, None, port, f"this machine ({local_dir})")
        return
    from ..remote import Remote

    found_job, target = app.inventory.resolve(job, instance, need_job=False, run_id=run_ids[0] if run_ids else None)
    name = found_job.name if found_job and job else None
    with connected(target) as transport:
        remote = Remote(transport, target)
        python = payload_python_for_board(remote, target, name or (found_job.name if found_job else None))
        argv = board_argv(python, [remote.layout.runs], name, run_ids)
        serve(app, transport, argv, remote.payload_dir, port, target.name)
