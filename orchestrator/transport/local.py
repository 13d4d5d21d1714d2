"""The `local` transport: the same interface over subprocesses, for running everything on one machine."""

from __future__ import annotations

import os
import select
import subprocess
import threading

from .base import Result, Stalled, command_failed


class LocalProcess:
    """A subprocess with binary pipes; reads go straight to the pipe (no hidden buffer), so a timeout set
    with `set_timeout` is exact: `select` says whether anything arrived."""

    def __init__(self, popen: subprocess.Popen):
        self._p = popen
        self._fd = popen.stdout.fileno()
        self._pending = b""
        self._timeout: float | None = None
        self._err = bytearray()
        self._err_reader = threading.Thread(target=self._drain_stderr, daemon=True)
        self._err_reader.start()

    def _drain_stderr(self) -> None:
        fd = self._p.stderr.fileno()
        for chunk in iter(lambda: os.read(fd, 65536), b""):
            self._err += chunk

    def set_timeout(self, seconds: float | None) -> None:
        self._timeout = seconds

    def _read_pipe(self, n: int) -> bytes:
        if self._timeout is not None:
            ready, _, _ = select.select([self._fd], [], [], self._timeout)
            if not ready:
                raise Stalled(self._timeout)
        return os.read(self._fd, n)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[self._p.stdin.write(view):]

    def close_stdin(self) -> None:
        if not self._p.stdin.closed:
            try:
                self._p.stdin.close()
            except BrokenPipeError:
                pass

    def read(self, n: int = 65536) -> bytes:
        if self._pending:
            data, self._pending = self._pending[:n], self._pending[n:]
            return data
        return self._read_pipe(n)

    def readline(self) -> bytes:
        while b"\n" not in self._pending:
            chunk = self._read_pipe(65536)
            if not chunk:
                line, self._pending = self._pending, b""
                return line
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line + b"\n"

    def wait(self, timeout: float | None = None) -> int:
        code = self._p.wait(timeout)
        self._err_reader.join(5)
        return code

    def stderr_text(self) -> str:
        return self._err.decode("utf-8", "replace")

    def kill(self) -> None:
        if self._p.poll() is None:
            self._p.kill()
        self._p.wait()


class LocalTransport:
    def __init__(self, instance_name: str):
        self.instance_name = instance_name
        self.commands_run = 0

    def _env(self, env: dict[str, str] | None) -> dict[str, str] | None:
        return None if not env else {**os.environ, **env}

    def run(self, argv, *, stdin=None, env=None, cwd=None, timeout=None, check=True) -> Result:
        self.commands_run += 1
        p = subprocess.run(argv, input=stdin if stdin is not None else b"", capture_output=True,
                           env=self._env(env), cwd=cwd, timeout=timeout)
        result = Result(list(argv), p.returncode, p.stdout, p.stderr)
        if check and not result.ok:
            raise command_failed(self.instance_name, result)
        return result

    def open(self, argv, *, env=None, cwd=None) -> LocalProcess:
        self.commands_run += 1
        popen = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, env=self._env(env), cwd=cwd, bufsize=0)
        return LocalProcess(popen)

    def open_tcp(self, host: str, port: int):
        """A TCP connection to `host:port` as this machine sees it (what a forward relays to)."""
        import socket

        return socket.create_connection((host, port), timeout=10)

    def close(self) -> None:
        pass
