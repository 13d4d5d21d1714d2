"""The one small interface both transports implement: run a command, or open a binary stream to one.

Commands are argument lists, never shell strings, so a value from the inventory can never be
interpreted by a remote shell. `commands_run` counts round trips (each run() or open() is one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..errors import RemoteError


@dataclass
class Result:
    argv: list[str]
    exit_code: int
    stdout: bytes
    stderr: bytes

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", "replace")

    @property
    def err_text(self) -> str:
        return self.stderr.decode("utf-8", "replace")

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class Stalled(TimeoutError):
    """No byte arrived on a stream for the time set with `Process.set_timeout`."""

    def __init__(self, seconds: float):
        super().__init__(f"no data for {seconds:g} s")
        self.seconds = seconds


class Process(Protocol):
    """A running command with binary stdin/stdout."""

    def set_timeout(self, seconds: float | None) -> None: ...   # read/readline raise Stalled after that long
    def write(self, data: bytes) -> None: ...
    def close_stdin(self) -> None: ...
    def read(self, n: int = 65536) -> bytes: ...   # b"" at end of stream
    def readline(self) -> bytes: ...               # b"" at end of stream
    def wait(self, timeout: float | None = None) -> int: ...
    def stderr_text(self) -> str: ...
    def kill(self) -> None: ...


class Transport(Protocol):
    instance_name: str
    commands_run: int

    def run(self, argv: list[str], *, stdin: bytes | None = None, env: dict[str, str] | None = None,
            cwd: str | None = None, timeout: float | None = None, check: bool = True) -> Result: ...

    def open(self, argv: list[str], *, env: dict[str, str] | None = None,
             cwd: str | None = None) -> Process: ...

    def open_tcp(self, host: str, port: int): ...   # a socket-like connection to host:port as the instance sees it

    def close(self) -> None: ...


def command_failed(instance: str, result: Result) -> RemoteError:
    """The error for a remote command that exited non-zero, naming the instance and the stderr tail."""
    tail = result.err_text.strip().splitlines()[-5:]
    detail = "\n    ".join(tail) if tail else "(no output on stderr)"
    return RemoteError(f"{instance}: `{result.argv[0]}` exited with {result.exit_code}:\n    {detail}")
