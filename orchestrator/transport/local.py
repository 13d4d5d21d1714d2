"""The `local` transport: the same interface over subprocesses, for running everything on one machine."""

from __future__ import annotations

import os
import subprocess
import threading

from .base import Result, command_failed


class LocalProcess:
    def __init__(self, popen: subprocess.Popen):
        self._p = popen
        self._err = bytearray()
        self._err_reader = threading.Thread(target=self._drain_stderr, daemon=True)
        self._err_reader.start()

    def _drain_stderr(self) -> None:
        for chunk in iter(lambda: self._p.stderr.read1(65536), b""):
            self._err += chunk

    def write(self, data: bytes) -> None:
        self._p.stdin.write(data)

    def close_stdin(self) -> None:
        if not self._p.stdin.closed:
            self._p.stdin.close()

    def read(self, n: int = 65536) -> bytes:
        return self._p.stdout.read1(n)

    def readline(self) -> bytes:
        return self._p.stdout.readline()

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
                                 stderr=subprocess.PIPE, env=self._env(env), cwd=cwd)
        return LocalProcess(popen)

    def close(self) -> None:
        pass
