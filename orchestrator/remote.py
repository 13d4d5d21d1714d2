"""The instance side, as the controller reaches it: the payload's stdlib tools, run from the deployed payload
folder (`work_dir/payload/<id>/`), so that the code reading a run is the code that wrote it.

`Remote(transport, instance)` runs `python3 -E -s PAYLOAD/remote_payload/<tool>.py ARGS`. When the current
payload is not on the instance yet, the first command finds no file (Python exits 2, "can't open file"):
the payload is installed -- `install.py` sent with `python3 -c`, the archive on stdin, under the deploy lock
-- and the command runs again. When it is there, that costs nothing: no check, no byte sent.

`install()` speaks install.py's protocol (see remote_payload/install.py): wait for the deploy lock, ship only
the archives the instance asks for, report the venv and env checks.
"""

from __future__ import annotations

import json
import posixpath
import struct
from dataclasses import dataclass, field
from typing import Callable

from .bundle import Archive, build_payload, payload_source
from .errors import InputError, OrchError, RemoteError
from .layout import Layout, layout_of
from .transport.base import Process, Result

MISSING_FILE = "can't open file"


@dataclass
class Installed:
    """What one `install()` did."""

    sent: dict[str, int] = field(default_factory=dict)       # item -> bytes shipped
    broken: dict[str, str] = field(default_factory=dict)     # item -> why the instance's copy was not trusted
    venv: str | None = None                                  # "present" | "built"
    versions: dict | None = None                             # the python_env's packages, when checked
    waited_s: float = 0.0

    @property
    def bytes_sent(self) -> int:
        return sum(self.sent.values())


class Remote:
    def __init__(self, transport, instance):
        self.transport, self.instance = transport, instance
        self.layout: Layout = layout_of(instance)
        self._payload: Archive | None = None

    # ---- the payload

    @property
    def payload(self) -> Archive:
        if self._payload is None:
            self._payload = build_payload()
        return self._payload

    @property
    def payload_dir(self) -> str:
        return self.layout.payload(self.payload.id)

    def tool_argv(self, tool: str, args: list[str], payload_dir: str | None = None) -> list[str]:
        script = posixpath.join(payload_dir or self.payload_dir, "remote_payload", f"{tool}.py")
        return [self.instance.python, "-E", "-s", script, *args]

    def ensure_payload(self, say: Callable[[str], None] | None = None, *, missing: bool = False) -> int:
        """Install the current payload if the instance lacks it (or its copy does not verify); bytes sent.
        `missing`: a tool just found no file there, so the installer goes straight to `python3 -c`."""
        return self.install({"payload": (self.payload_dir, self.payload)}, say=say, bootstrap=missing).bytes_sent

    # ---- running tools

    def run(self, tool: str, *args: str, payload_dir: str | None = None, stdin: bytes | None = None,
            timeout: float | None = None) -> Result:
        """Run a tool (never raises for its exit code: tools answer in JSON)."""
        own = payload_dir in (None, self.payload_dir)
        result = self.transport.run(self.tool_argv(tool, list(args), payload_dir), stdin=stdin, timeout=timeout,
                                    check=False)
        if _missing(result.exit_code, result.err_text):
            if not own:               # an older run's payload lacks this tool: use the current one
                return self.run(tool, *args, stdin=stdin, timeout=timeout)
            self.ensure_payload(missing=True)
            result = self.transport.run(self.tool_argv(tool, list(args)), stdin=stdin, timeout=timeout, check=False)
        return result

    def open(self, tool: str, *args: str, payload_dir: str | None = None) -> Process:
        """Start a streaming tool; installs the payload first when its file is not there."""
        argv = self.tool_argv(tool, list(args), payload_dir)
        proc = self.transport.open(argv)
        first = proc.readline()
        if first:
            return _Replay(proc, first)
        code = proc.wait(30)
        if not _missing(code, proc.stderr_text()):
            return _Replay(proc, b"")
        if payload_dir not in (None, self.payload_dir):
            return self.open(tool, *args)
        self.ensure_payload(missing=True)
        return self.transport.open(self.tool_argv(tool, list(args)))

    def json(self, tool: str, *args: str, what: str, payload_dir: str | None = None,
             timeout: float | None = None) -> dict:
        """Run a tool that prints one JSON object; a tool that could not answer is a RemoteError."""
        result = self.run(tool, *args, payload_dir=payload_dir, timeout=timeout)
        try:
            doc = json.loads(result.text.strip().splitlines()[-1])
            if isinstance(doc, dict):
                return doc
        except (ValueError, IndexError):
            pass
        raise RemoteError(f"{self.instance.name}: {what} failed (exit {result.exit_code}): "
                          f"{result.err_text.strip()[-600:] or result.text.strip()[-300:] or '(no output)'}")

    # ---- installing

    def install(self, items: dict[str, tuple[str, Archive]], *, venv: str | None = None,
                requirements: str | None = None, pip_args: list[str] | tuple[str, ...] = (),
                check_env: str | None = None, report_venv: str | None = None, holder: dict | None = None,
                say: Callable[[str], None] | None = None, bootstrap: bool = False) -> Installed:
        """Run install.py under the deploy lock: ship the archives the instance asks for, ensure the venv."""
        args = ["--lock", self.layout.deploy_lock, "--holder", json.dumps(holder or {})]
        for name, (folder, _) in items.items():
            args += ["--item", f"{name}={folder}"]
        if venv:
            args += ["--venv", venv, "--requirements", requirements, *(f"--pip-arg={a}" for a in pip_args)]
        if check_env:
            args += ["--check-env", check_env, "--cwd", self.payload_dir]
        if report_venv:
            args += ["--report-venv", report_venv]
        bootstrap_argv = [self.instance.python, "-E", "-s", "-c", payload_source("install.py").decode(), *args]
        proc = self.transport.open(bootstrap_argv if bootstrap else self.tool_argv("install", args))
        first = proc.readline()
        if not first and not bootstrap:
            code = proc.wait(30)
            if not _missing(code, proc.stderr_text()):
                raise RemoteError(f"{self.instance.name}: the installer exited with {code}: "
                                  f"{proc.stderr_text().strip()[-600:] or '(no output)'}")
            proc = self.transport.open(bootstrap_argv)
            first = proc.readline()
        return _Session(self, proc, items, say or (lambda _m: None)).run(first)


class _Session:
    """One install.py conversation."""

    def __init__(self, remote: Remote, proc: Process, items: dict[str, tuple[str, Archive]], say):
        self.remote, self.proc, self.items, self.say = remote, proc, items, say
        self.result = Installed()
        self.error: dict | None = None

    def run(self, line: bytes) -> Installed:
        import time

        started = time.monotonic()
        try:
            while line:
                self.handle(json.loads(line), started)
                line = self.proc.readline()
            code = self.proc.wait(60)
        except BaseException:
            self.proc.kill()
            raise
        if self.error:
            kind = InputError if self.error.get("exit_code") == 2 else RemoteError
            raise kind(f"{self.remote.instance.name}: {self.error['message']}", self.error.get("hint"))
        if code != 0:
            raise RemoteError(f"{self.remote.instance.name}: the installer exited with {code}: "
                              f"{self.proc.stderr_text().strip()[-600:] or '(no output)'}")
        return self.result

    def handle(self, event: dict, started: float) -> None:
        import time

        kind = event.get("event")
        if kind == "waiting":
            holder = event.get("holder") or {}
            since = holder.get("since")
            held = f", for {time.time() - since:.0f} s" if isinstance(since, (int, float)) else ""
            self.say(f"waiting for another deploy on {self.remote.instance.name} "
                     f"(job {holder.get('job', '?')}, pid {holder.get('pid', '?')}{held})")
        elif kind == "locked":
            self.result.waited_s = round(time.monotonic() - started, 3)
        elif kind == "broken":
            self.result.broken[event["item"]] = event["reason"]
            self.say(f"the instance's copy of the {event['item']} did not verify ({event['reason']}): rebuilding it")
        elif kind == "need":
            for name in event.get("items", []):
                archive = self.items[name][1]
                self.say(f"sending the {name} ({archive.size / 1e6:.1f} MB)")
                self.proc.write(struct.pack(">Q", archive.size))
                view = memoryview(archive.data)
                for start in range(0, len(view), 1 << 20):
                    self.proc.write(bytes(view[start:start + (1 << 20)]))
                self.result.sent[name] = archive.size
            self.proc.close_stdin()
        elif kind == "venv":
            if event["status"] == "building":
                self.say(f"creating the venv {event['dir']} (pip install of the payload's pins; minutes on first deploy)")
            else:
                self.result.venv = event["status"]
        elif kind == "env":
            self.result.versions = event.get("versions")
        elif kind == "error":
            self.error = event


class _Replay:
    """A process whose first stdout line was already read (to tell a missing tool from a running one)."""

    def __init__(self, proc: Process, first: bytes):
        self._proc, self._first = proc, first

    def readline(self) -> bytes:
        if self._first:
            line, self._first = self._first, b""
            return line
        return self._proc.readline()

    def read(self, n: int = 1 << 20) -> bytes:
        if self._first:
            data, self._first = self._first[:n], self._first[n:]
            return data
        return self._proc.read(n)

    def __getattr__(self, name):
        return getattr(self._proc, name)


def _missing(code: int, stderr: str) -> bool:
    return code == 2 and MISSING_FILE in stderr


__all__ = ["Installed", "OrchError", "Remote"]
