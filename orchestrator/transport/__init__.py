"""How orch reaches an instance: `connect(instance)` gives a connected `Transport` (see base.py).

`ssh` instances get an `SshTransport` (paramiko, host key checked, one connection reused for every
command); `local` instances a `LocalTransport` (subprocesses on this machine). Import cost matters to
every `orch` command, so paramiko is only imported when an SSH connection is made.
"""

from __future__ import annotations

from .base import Process, Result, Transport, command_failed


def connect(instance, *, connect_timeout: float | None = None) -> Transport:
    """A ready transport for `instance`; raises RemoteError/InputError naming what to fix."""
    if instance.transport == "local":
        from .local import LocalTransport

        return LocalTransport(instance.name)
    from .ssh import SshTransport

    return SshTransport(instance, connect_timeout=connect_timeout).connect()


__all__ = ["Process", "Result", "Transport", "command_failed", "connect"]
