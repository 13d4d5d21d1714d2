"""TensorBoard over a job's runs, for `orch tensorboard` (through an SSH port forward) or a local folder.

    python -m remote_payload.board --runs-dir WORK/runs [--runs-dir DIR ...] [--job NAME] [--run ID ...]
                                   [--host 127.0.0.1] [--port 0]

Serves the `tensorboard/` folder of every matching run (all runs of the job, or the named ones) of every runs
folder given (on the instance WORK/runs; on the controller, `orch tensorboard --local`, the job folders of a fetch
destination), each under its run id (TensorBoard shows it as "<run id>/.") so runs can be compared, as seed 003
does with `--logdir output`.
It binds to 127.0.0.1 by default and to a free port unless one is given; once it is serving it prints one JSON
line on stdout -- {"url", "host", "port", "pid", "runs": [{"run_id", "logdir"}]} -- and serves until its stdin
closes (the SSH session ended) or it gets SIGTERM/SIGINT. A fresh process per session, on a fresh port, reloading every 5 s:
seed 003's page of "No dashboards are active" troubleshooting (stale processes, cached state, port conflicts)
does not arise. Exit status: 0 after serving, 2 when no run matches or none has TensorBoard logs yet.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
from pathlib import Path

from .errors import InputError


def find_runs(runs_dir: Path | list[Path], job: str | None, run_ids: list[str]) -> list[dict]:
    """[{"run_id", "logdir"}] of the runs with TensorBoard event files, oldest name first within each runs folder
    (hidden folders, such as a fetch's `.<run>.partial`, are not runs)."""
    dirs = [runs_dir] if isinstance(runs_dir, Path) else list(runs_dir)
    found = []
    for top in dirs:
        if not top.is_dir():
            raise InputError(f"{top} is not a directory of runs")
        for run in sorted(p for p in top.resolve().iterdir() if p.is_dir() and not p.name.startswith(".")):
            if run_ids and run.name not in run_ids:
                continue
            if job and not run.name.startswith(f"{job}-") and _job_of(run) != job:
                continue
            logdir = run / "tensorboard"
            if any(logdir.glob("events.out.tfevents.*")):
                found.append({"run_id": run.name, "logdir": str(logdir)})
    if not found:
        what = f"run(s) {', '.join(run_ids)}" if run_ids else (f"job {job}" if job else "any run")
        raise InputError(f"no TensorBoard logs for {what} under {', '.join(str(d) for d in dirs)}",
                         hint="a run writes RUN/tensorboard/ from its first logging step on")
    return found


def _job_of(run: Path) -> str | None:
    try:
        return json.loads((run / "run.json").read_text(encoding="utf-8"))["job"]["job"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def serve(runs: list[dict], host: str, port: int) -> str:
    """Start TensorBoard in this process (its server runs in a thread); returns its URL."""
    from tensorboard import program

    board = program.TensorBoard()
    spec = ",".join(f"{r['run_id']}:{r['logdir']}" for r in runs)
    board.configure(argv=[None, "--logdir_spec", spec, "--host", host, "--port", str(port),
                          "--reload_interval", "5"])
    return board.launch()


def wait_for_end() -> None:
    """Until stdin closes or a termination signal arrives."""
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())

    def watch_stdin():
        while sys.stdin.buffer.read(4096):
            pass
        done.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    done.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m remote_payload.board", description=__doc__.split("\n")[0])
    parser.add_argument("--runs-dir", required=True, action="append", type=Path,
                        help="folder of run directories (WORK/runs); repeatable")
    parser.add_argument("--job", default=None, help="only this job's runs")
    parser.add_argument("--run", action="append", default=[], metavar="ID", help="only this run (repeatable)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    args = parser.parse_args(argv)
    try:
        runs = find_runs(args.runs_dir, args.job, args.run)
    except InputError as exc:
        print(f"board: {exc}", file=sys.stderr)
        return exc.exit_code
    port = args.port or free_port(args.host)
    url = serve(runs, args.host, port)
    print(json.dumps({"url": url, "host": args.host, "port": port, "pid": os.getpid(), "runs": runs}), flush=True)
    wait_for_end()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
