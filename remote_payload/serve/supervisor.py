"""Keep one server process running where systemd does not (containers, the tests' sshd host). Stdlib only.

    python3 -m remote_payload.serve.supervisor start  --state-dir DIR --name NAME [policy] [--env K=V] -- CMD...
    python3 -m remote_payload.serve.supervisor run    (the same, in the foreground)
    python3 -m remote_payload.serve.supervisor status --state-dir DIR --name NAME
    python3 -m remote_payload.serve.supervisor stop   --state-dir DIR --name NAME [--grace S]

It does what the systemd unit of `systemd.py` does: Restart=always (the command is started again whenever it
exits), RestartSec with exponential backoff (--restart-sec doubling up to --max-restart-sec; reset once a run
lasted --reset-after seconds), and StartLimitIntervalSec/StartLimitBurst (--start-limit-burst starts within
--start-limit-interval seconds and it gives up: state "failed" with the reason), so a broken adapter that
makes vLLM exit during loading does not loop forever. The command runs in its own process group, and the
whole group is killed after each exit (vLLM's engine and worker processes included), like systemd's
KillMode=control-group.

State in DIR/NAME/: `state.json` (state starting|running|backoff|failed|stopped, pids, starts, last exit,
reason), `restarts` (how many times the command was restarted: what `orch serve status` shows), `log` (the
command's stdout/stderr and the supervisor's own lines, appended), `supervisor.pid`.
`start` prints {"name", "pid", "state_dir"} as JSON; `status` prints state.json plus "alive"; exit 0, or
2 for a bad request (already running, not running for stop).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

MARKER = "remote_payload.serve.supervisor"


@dataclass(frozen=True)
class Policy:
    restart_sec: float = 5.0
    max_restart_sec: float = 60.0
    reset_after: float = 120.0        # a run this long counts as healthy: the backoff starts again from restart_sec
    start_limit_burst: int = 5
    start_limit_interval: float = 900.0   # vLLM may need minutes to fail while loading: count starts over 15 min
    stop_grace: float = 30.0          # on stop: TERM, then KILL the process group after this many seconds

    def __post_init__(self):
        for name in ("restart_sec", "max_restart_sec", "start_limit_interval", "stop_grace"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 0")
        if self.start_limit_burst < 1:
            raise ValueError("--start-limit-burst must be >= 1")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def pid_is_supervisor(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            cmdline = handle.read()
        with open(f"/proc/{pid}/stat") as handle:
            if handle.read().rsplit(")", 1)[1].split()[0] == "Z":
                return False
    except (OSError, ValueError):
        return False
    return MARKER.encode() in cmdline or b"supervisor.py" in cmdline


class Supervisor:
    def __init__(self, state_dir: Path, name: str, command: list[str], env: dict[str, str], policy: Policy):
        self.dir = state_dir / name
        self.name, self.command, self.env, self.policy = name, command, env, policy
        self.stopping = False
        self.child: subprocess.Popen | None = None
        self.state: dict = {}

    # --- files ---
    def log(self, message: str) -> None:
        with open(self.dir / "log", "a") as handle:
            handle.write(f"[supervisor {time.strftime('%Y-%m-%dT%H:%M:%S')}] {message}\n")

    def save(self, **changes) -> None:
        self.state.update(changes, updated_at=time.time())
        _write_atomic(self.dir / "state.json", json.dumps(self.state, indent=2) + "\n")

    def count_restart(self) -> int:
        restarts = int(self.state.get("restarts", 0)) + 1
        _write_atomic(self.dir / "restarts", f"{restarts}\n")
        return restarts

    # --- process ---
    def spawn(self) -> subprocess.Popen:
        log = open(self.dir / "log", "ab")
        try:
            return subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    env={**os.environ, **self.env}, start_new_session=True)
        finally:
            log.close()

    def kill_group(self, pid: int, grace: float) -> None:
        """TERM the command's process group, KILL whatever is left after `grace` seconds."""
        try:
            os.killpg(pid, signal.SIGTERM)
        except OSError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(pid, 0)
            except OSError:
                return
            if self.child is not None:
                self.child.poll()
            time.sleep(0.1)
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass

    def on_signal(self, signum, _frame) -> None:
        self.stopping = True

    def sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def run(self) -> int:
        self.dir.mkdir(parents=True, exist_ok=True)
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)
        _write_atomic(self.dir / "supervisor.pid", f"{os.getpid()}\n")
        _write_atomic(self.dir / "restarts", "0\n")
        self.state = {"name": self.name, "command": self.command, "supervisor_pid": os.getpid(), "restarts": 0,
                      "policy": self.policy.__dict__, "starts": [], "last_exit": None, "reason": None}
        starts: deque[float] = deque()
        delay = self.policy.restart_sec
        while not self.stopping:
            now = time.monotonic()
            while starts and now - starts[0] > self.policy.start_limit_interval:
                starts.popleft()
            if len(starts) >= self.policy.start_limit_burst:
                reason = (f"started {len(starts)} times within {self.policy.start_limit_interval:g}s "
                          f"(start limit {self.policy.start_limit_burst}); giving up. Last exit: "
                          f"{self.state.get('last_exit')}. See {self.dir / 'log'}")
                self.log(reason)
                self.save(state="failed", child_pid=None, reason=reason)
                return 1
            if starts or self.state["last_exit"]:
                self.save(restarts=self.count_restart())
            starts.append(now)
            self.child = self.spawn()
            began = time.monotonic()
            self.log(f"started pid {self.child.pid}: {' '.join(self.command)}")
            self.save(state="running", child_pid=self.child.pid, started_at=time.time(),
                      starts=[*self.state["starts"][-19:], time.time()])
            while not self.stopping and self.child.poll() is None:
                time.sleep(0.2)
            if self.stopping:
                break
            code = self.child.returncode
            self.kill_group(self.child.pid, grace=5.0)   # orphans (vLLM's engine core, workers) go with it
            ran = time.monotonic() - began
            exit_info = {"code": code if code >= 0 else None, "signal": -code if code < 0 else None,
                         "after_seconds": round(ran, 1), "at": time.time()}
            delay = self.policy.restart_sec if ran >= self.policy.reset_after else delay
            self.log(f"pid {self.child.pid} exited ({exit_info}); starting it again in {delay:g}s")
            self.save(state="backoff", child_pid=None, last_exit=exit_info, next_delay=delay)
            self.sleep(delay)
            delay = min(max(delay, 0.1) * 2, self.policy.max_restart_sec)
        if self.child is not None and self.child.poll() is None:
            self.log(f"stopping pid {self.child.pid}")
            self.kill_group(self.child.pid, grace=self.policy.stop_grace)
            self.child.wait()
        self.save(state="stopped", child_pid=None, reason="stopped on request")
        return 0


# --- commands -----------------------------------------------------------------------------------------------

def status(state_dir: Path, name: str) -> dict:
    directory = state_dir / name
    state = _read_json(directory / "state.json")
    try:
        pid = int((directory / "supervisor.pid").read_text())
    except (OSError, ValueError):
        pid = None
    alive = bool(pid) and pid_is_supervisor(pid)
    try:
        restarts = int((directory / "restarts").read_text())
    except (OSError, ValueError):
        restarts = state.get("restarts", 0)
    if not state:
        return {"name": name, "state": "absent", "alive": False, "restarts": 0}
    if not alive and state.get("state") not in ("stopped", "failed"):
        state["state"], state["reason"] = "lost", "the supervisor is gone (machine restarted or killed)"
    return {**state, "alive": alive, "restarts": restarts, "log": str(directory / "log")}


def stop(state_dir: Path, name: str, grace: float) -> dict:
    current = status(state_dir, name)
    if not current["alive"]:
        return current
    os.kill(int(current["supervisor_pid"]), signal.SIGTERM)
    deadline = time.monotonic() + grace + 10
    while time.monotonic() < deadline and pid_is_supervisor(int(current["supervisor_pid"])):
        time.sleep(0.1)
    return status(state_dir, name)


def detach(run) -> int:
    """Double fork into a new session; the parent returns the grandchild's pid."""
    read_end, write_end = os.pipe()
    middle = os.fork()
    if middle:
        os.close(write_end)
        pid = int(os.read(read_end, 32).decode() or 0)
        os.close(read_end)
        os.waitpid(middle, 0)
        return pid
    os.setsid()
    if os.fork():
        os._exit(0)
    os.close(read_end)
    os.write(write_end, str(os.getpid()).encode())
    os.close(write_end)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os._exit(run())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python3 -m {MARKER}", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    for action in ("start", "run", "status", "stop"):
        p = sub.add_parser(action)
        p.add_argument("--state-dir", required=True, type=Path)
        p.add_argument("--name", required=True)
        if action in ("start", "run"):
            defaults = Policy()
            for field, value in defaults.__dict__.items():
                p.add_argument(f"--{field.replace('_', '-')}", type=type(value), default=value)
            p.add_argument("--env", action="append", default=[], metavar="K=V")
            p.add_argument("command", nargs=argparse.REMAINDER)
        if action == "stop":
            p.add_argument("--grace", type=float, default=30.0, help="how long to wait for the supervisor to end")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.action == "status":
        print(json.dumps(status(args.state_dir, args.name), indent=2))
        return 0
    if args.action == "stop":
        before = status(args.state_dir, args.name)
        if not before["alive"]:
            print(f"supervisor: {args.name} is not running (state {before['state']})", file=sys.stderr)
            return 2
        print(json.dumps(stop(args.state_dir, args.name, args.grace), indent=2))
        return 0
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("supervisor: no command given (put it after --)", file=sys.stderr)
        return 2
    try:
        policy = Policy(**{f: getattr(args, f) for f in Policy().__dict__})
    except ValueError as exc:
        print(f"supervisor: {exc}", file=sys.stderr)
        return 2
    env = dict(item.split("=", 1) for item in args.env if "=" in item)
    current = status(args.state_dir, args.name)
    if current["alive"]:
        print(f"supervisor: {args.name} is already running (pid {current['supervisor_pid']}); stop it first",
              file=sys.stderr)
        return 2
    supervisor = Supervisor(args.state_dir.resolve(), args.name, command, env, policy)
    if args.action == "run":
        return supervisor.run()
    (args.state_dir / args.name).mkdir(parents=True, exist_ok=True)
    pid = detach(supervisor.run)
    print(json.dumps({"name": args.name, "pid": pid, "state_dir": str(args.state_dir / args.name)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
