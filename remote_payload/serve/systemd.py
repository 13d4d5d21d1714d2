"""systemd units for the vLLM server and the /generate API, where systemd runs (seed 001's `qwen.service`).

    python3 -m remote_payload.serve.systemd --name orch-vllm-demo --description TEXT [--user U]
            [--workdir DIR] [--log FILE] [--env K=V ...] [policy flags] -- CMD...

prints the unit text. Seed 001's unit had Restart=always and RestartSec=5 but no start limit: an adapter that
makes vLLM exit while loading restarts it forever. Here StartLimitBurst/StartLimitIntervalSec (in [Unit], where
systemd >= 230 reads them) stop it after `burst` starts within `interval` seconds; the interval is long (15
min by default) because a 14B model takes minutes to load and fail. KillMode=control-group takes vLLM's engine
and worker processes down with it. The supervisor (supervisor.py) applies the same policy where systemd does
not run; `Policy` is shared so both read the same numbers.

Installing (root): write the text to /etc/systemd/system/NAME.service, `systemctl daemon-reload`,
`systemctl enable --now NAME`; `systemctl status NAME` / `journalctl -u NAME` show it; `NRestarts` of
`systemctl show NAME` is systemd's restart counter.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .supervisor import Policy

UNIT_DIR = Path("/etc/systemd/system")


def systemd_running() -> bool:
    """sd_booted(): systemd is PID 1 on this machine."""
    return os.path.isdir("/run/systemd/system")


def quote(arg: str) -> str:
    """One ExecStart argument in systemd's syntax: specifiers (%) and variables ($) escaped, quoted if needed."""
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    needs_quotes = not arg or any(c.isspace() or c in "\"'\\;" for c in arg)
    return f'"{escaped}"' if needs_quotes else escaped


def render_unit(name: str, description: str, command: list[str], env: dict[str, str] | None = None,
                user: str | None = None, workdir: str | None = None, log: str | None = None,
                policy: Policy = Policy(), after: list[str] | None = None) -> str:
    if not command:
        raise ValueError("a unit needs a command")
    lines = ["[Unit]", f"Description={description}", "After=network-online.target " + " ".join(after or []),
             "Wants=network-online.target",
             f"StartLimitIntervalSec={int(policy.start_limit_interval)}",
             f"StartLimitBurst={policy.start_limit_burst}", "", "[Service]", "Type=simple"]
    if user:
        lines.append(f"User={user}")
    if workdir:
        lines.append(f"WorkingDirectory={workdir}")
    for key, value in sorted((env or {}).items()):
        lines.append(f"Environment={quote(f'{key}={value}')}")
    lines += [f"ExecStart={' '.join(quote(a) for a in command)}", "Restart=always",
              f"RestartSec={policy.restart_sec:g}", f"TimeoutStopSec={int(policy.stop_grace)}",
              "KillMode=control-group"]
    if log:
        lines += [f"StandardOutput=append:{log}", "StandardError=inherit"]
    lines += ["", "[Install]", "WantedBy=multi-user.target", ""]
    return "\n".join(line.rstrip() for line in lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m remote_payload.serve.systemd",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--description", default="orch server")
    parser.add_argument("--user")
    parser.add_argument("--workdir")
    parser.add_argument("--log")
    parser.add_argument("--env", action="append", default=[], metavar="K=V")
    defaults = Policy()
    for field in ("restart_sec", "start_limit_burst", "start_limit_interval", "stop_grace"):
        parser.add_argument(f"--{field.replace('_', '-')}", type=type(getattr(defaults, field)),
                            default=getattr(defaults, field))
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    policy = Policy(restart_sec=args.restart_sec, start_limit_burst=args.start_limit_burst,
                    start_limit_interval=args.start_limit_interval, stop_grace=args.stop_grace)
    env = dict(item.split("=", 1) for item in args.env if "=" in item)
    try:
        print(render_unit(args.name, args.description, command, env, args.user, args.workdir, args.log, policy),
              end="")
    except ValueError as exc:
        print(f"systemd: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
