"""Start, inspect and stop the served model on the instance: vLLM plus the /generate API. Stdlib only.

    python3 -m remote_payload.serve up     --export DIR [--base BASE] --python SERVE_VENV/bin/python
                                           --state-dir DIR [--port 8000] [--api-port 8080] [--device auto]
                                           [--max-model-len N] [--lora NAME=DIR ...] [--manager auto|systemd|supervisor]
                                           [--wait 900] [policy flags] [--json]
    python3 -m remote_payload.serve status --state-dir DIR [--json]
    python3 -m remote_payload.serve logs   --state-dir DIR [--process vllm|api] [--lines 200]
    python3 -m remote_payload.serve stop   --state-dir DIR [--json]

`up` builds the vLLM command (command.py; a raw adapter, a failed export or an unservable W4A16 is refused with
exit 2 before anything starts), then runs two processes, "vllm" and "api" (api.py, in the same venv), each
under systemd units (systemd.py) when systemd is PID 1 and we are root, else under the restart supervisor
(supervisor.py): both restart on exit with backoff and give up after the start limit. It waits until the
API's /health is healthy (vLLM answers and lists the model) and prints where both listen. Exit 1 when a
process fails its start limit or /health stays unhealthy past --wait (the log tail on stderr).
`status` shows each process (state, restarts, pids) and the API's /health; `stop` stops both.
DIR/serve.json records what `up` started, for status/logs/stop.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from . import supervisor, systemd
from .command import ServeRefused, add_arguments, command_from_args

PROCESSES = ("vllm", "api")
SERVE_FILE = "serve.json"


class ServeFailed(Exception):
    """A process gave up or /health stayed unhealthy (exit 1)."""


def health(url: str, timeout: float = 5.0) -> tuple[bool, dict]:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as reply:
            return reply.status == 200, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        try:
            return False, json.loads(exc.read())
        except ValueError:
            return False, {"reason": f"HTTP {exc.code}"}
    except (OSError, ValueError) as exc:
        return False, {"reason": f"the API is not answering ({type(exc).__name__})"}


def choose_manager(requested: str) -> str:
    if requested != "auto":
        return requested
    return "systemd" if systemd.systemd_running() and os.geteuid() == 0 else "supervisor"


def unit_name(name: str, process: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in name)
    return f"orch-{process}-{safe}"


def start_process(manager: str, state_dir: Path, name: str, unit: str, argv: list[str], env: dict[str, str],
                  policy: supervisor.Policy) -> dict:
    if manager == "supervisor":
        flags = [f"--{k.replace('_', '-')}={v}" for k, v in policy.__dict__.items()]
        out = subprocess.run([sys.executable, "-m", supervisor.MARKER, "start", "--state-dir", str(state_dir),
                              "--name", name, *flags, *(f"--env={k}={v}" for k, v in env.items()), "--", *argv],
                             capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
        if out.returncode != 0:
            raise ServeRefused(out.stderr.strip())
        return json.loads(out.stdout)
    text = systemd.render_unit(unit, f"orch {name}", argv, env, workdir=str(state_dir),
                               log=str(state_dir / f"{name}.log"), policy=policy)
    (systemd.UNIT_DIR / f"{unit}.service").write_text(text)
    for command in (["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", unit]):
        subprocess.run(command, check=True, capture_output=True)
    return {"name": name, "unit": unit}


def process_status(serve: dict, process: str) -> dict:
    state_dir = Path(serve["state_dir"])
    if serve["manager"] == "supervisor":
        return supervisor.status(state_dir, process)
    unit = serve["units"][process]
    out = subprocess.run(["systemctl", "show", unit, "-p", "ActiveState,SubState,NRestarts,MainPID"],
                         capture_output=True, text=True).stdout
    props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return {"name": process, "unit": unit, "state": props.get("ActiveState"), "sub_state": props.get("SubState"),
            "restarts": int(props.get("NRestarts") or 0), "child_pid": int(props.get("MainPID") or 0) or None}


def up(args: argparse.Namespace) -> dict:
    command = command_from_args(args)
    state_dir = Path(args.state_dir).resolve()
    if (state_dir / SERVE_FILE).is_file():
        previous = json.loads((state_dir / SERVE_FILE).read_text())
        running = [p for p in PROCESSES if process_status(previous, p).get("state") in ("running", "backoff",
                                                                                          "active", "activating")]
        if running:
            raise ServeRefused(f"{state_dir} is already serving {previous['served_name']} ({', '.join(running)} "
                               f"running); stop it first: python3 -m remote_payload.serve stop --state-dir {state_dir}")
    state_dir.mkdir(parents=True, exist_ok=True)
    manager = choose_manager(args.manager)
    policy = supervisor.Policy(restart_sec=args.restart_sec, start_limit_burst=args.start_limit_burst,
                               start_limit_interval=args.start_limit_interval)
    api_url = f"http://{args.host}:{args.api_port}"
    api_argv = [args.python, "-m", "remote_payload.serve.api", "--export", command.tokenizer,
                "--vllm-url", command.url, "--host", args.host, "--port", str(args.api_port)]
    if args.base:
        api_argv += ["--base", str(Path(args.base).resolve())]
    payload_root = str(Path(__file__).resolve().parents[2])
    api_env = {**command.env, "PYTHONPATH": payload_root}
    serve = {"manager": manager, "state_dir": str(state_dir), "vllm_url": command.url, "api_url": api_url,
             "served_name": command.served_name, "kind": command.kind, "export": command.tokenizer,
             "vllm_argv": command.argv, "units": {p: unit_name(command.served_name, p) for p in PROCESSES},
             "started_at": time.time()}
    (state_dir / SERVE_FILE).write_text(json.dumps(serve, indent=2) + "\n")
    started = time.monotonic()
    start_process(manager, state_dir, "vllm", serve["units"]["vllm"], command.argv, command.env, policy)
    start_process(manager, state_dir, "api", serve["units"]["api"], api_argv, api_env, policy)
    deadline = started + args.wait
    while True:
        healthy, detail = health(api_url)
        if healthy:
            break
        failed = [p for p in PROCESSES if process_status(serve, p).get("state") == "failed"]
        if failed or time.monotonic() > deadline:
            why = f"{', '.join(failed)} gave up after its start limit" if failed else \
                f"/health still unhealthy after {args.wait:g}s: {detail.get('reason')}"
            raise ServeFailed(f"serving {command.served_name} failed: {why}\n" +
                              tail(serve, failed[0] if failed else "vllm", 30))
        time.sleep(1.0)
    return {**serve, "healthy": True, "health": detail, "seconds": round(time.monotonic() - started, 1)}


def tail(serve: dict, process: str, lines: int) -> str:
    path = Path(serve["state_dir"]) / (f"{process}/log" if serve["manager"] == "supervisor" else f"{process}.log")
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def read_serve(state_dir: str) -> dict:
    path = Path(state_dir) / SERVE_FILE
    if not path.is_file():
        raise ServeRefused(f"nothing was started from {state_dir} ({SERVE_FILE} missing); run `up` first")
    return json.loads(path.read_text())


def status(state_dir: str) -> dict:
    serve = read_serve(state_dir)
    healthy, detail = health(serve["api_url"], timeout=3)
    return {**serve, "healthy": healthy, "health": detail,
            "processes": {p: process_status(serve, p) for p in PROCESSES}}


def stop(state_dir: str) -> dict:
    serve = read_serve(state_dir)
    for process in reversed(PROCESSES):
        if serve["manager"] == "supervisor":
            supervisor.stop(Path(serve["state_dir"]), process, grace=60)
        else:
            subprocess.run(["systemctl", "disable", "--now", serve["units"][process]], capture_output=True)
    return status(state_dir)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m remote_payload.serve", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    p_up = sub.add_parser("up")
    add_arguments(p_up)
    p_up.add_argument("--state-dir", required=True)
    p_up.add_argument("--api-port", type=int, default=8080)
    p_up.add_argument("--manager", default="auto", choices=("auto", "systemd", "supervisor"))
    p_up.add_argument("--wait", type=float, default=900.0, help="seconds to wait for /health (default 900)")
    defaults = supervisor.Policy()
    for field in ("restart_sec", "start_limit_burst", "start_limit_interval"):
        p_up.add_argument(f"--{field.replace('_', '-')}", type=type(getattr(defaults, field)),
                          default=getattr(defaults, field))
    for action in ("status", "logs", "stop"):
        p = sub.add_parser(action)
        p.add_argument("--state-dir", required=True)
        if action == "logs":
            p.add_argument("--process", default="vllm", choices=PROCESSES)
            p.add_argument("--lines", type=int, default=200)
    for p in sub.choices.values():
        p.add_argument("--json", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.action == "logs":
            print(tail(read_serve(args.state_dir), args.process, args.lines))
            return 0
        result = {"up": up, "status": lambda a: status(a.state_dir), "stop": lambda a: stop(a.state_dir)}[
            args.action](args)
    except ServeFailed as exc:
        print(f"serve: {exc}", file=sys.stderr)
        return 1
    except ServeRefused as exc:
        print(f"serve: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"serve: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        procs = result.get("processes") or {}
        print(f"{result['served_name']} ({result['kind']}) via {result['manager']}: vLLM {result['vllm_url']}, "
              f"API {result['api_url']}, {'healthy' if result['healthy'] else 'unhealthy'}" +
              "".join(f"; {p} {s.get('state')} restarts {s.get('restarts')}" for p, s in procs.items()))
    return 0 if result.get("healthy") or args.action == "stop" else 1


if __name__ == "__main__":
    raise SystemExit(main())
