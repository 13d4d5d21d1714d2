"""Jump hosts (bastions): an instance reached through `jump: [...]` or ssh_config's ProxyJump.

A `Hop` is one bastion, with what connecting to it needs (address, login, key, where its host key is
recorded) and where each value came from. The inventory resolves them (`inventory.py`); `SshTransport`
connects hop by hop: TCP to the first hop, then each next hop over a `direct-tcpip` channel of the one before
(paramiko's `sock=channel`), so there is one TCP connection from this machine, and every hop's host key is
checked before any credential is sent to it. `orch trust` through the hops is in trust.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import InputError
from .errors import Unreachable

SPEC = re.compile(r"^(?:ssh://)?(?:(?P<user>[A-Za-z0-9_][A-Za-z0-9_.\-]*)@)?"
                  r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_][A-Za-z0-9_.\-]*)(?::(?P<port>\d{1,5}))?$")


@dataclass
class Hop:
    """One bastion on the way to instance `name`. It answers the same attributes as an `Instance` does for
    connecting (host, port, user, key..., `origin()`), plus `role` ("bastion", "bastion 2", "bastion jumpbox"),
    which every message about it starts with."""

    name: str                               # the target instance (trust hints name it)
    role: str
    host: str
    port: int = 22
    user: str | None = None
    key: str | None = None
    key_passphrase: str | None = None
    agent: bool | None = None
    identities_only: bool = False
    host_key: str | None = None
    known_hosts: str | None = None
    connect_timeout: float = 10.0
    server_alive_interval: float = 15.0
    server_alive_count_max: int = 3
    transport: str = "ssh"
    origins: dict[str, str] = field(default_factory=dict, repr=False)

    def origin(self, name: str) -> str:
        return self.origins.get(name) or f"instances.{self.name}.jump in the inventory"

    @property
    def address(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    def __post_init__(self) -> None:
        if not self.user:
            raise InputError(f"instance {self.name}: {self.role} {self.host} has no login user",
                             hint=f"write it as user@{self.host}, or set User for it in ssh_config")
        if not 0 < int(self.port) < 65536:
            raise InputError(f"instance {self.name}: {self.role} port {self.port} is out of range",
                             hint=f"it comes from {self.origin('port')}")


def parse_spec(spec: str) -> tuple[str | None, str, int | None]:
    """`[user@]host[:port]` (or `ssh://...`, as ProxyJump allows) -> (user, host, port)."""
    m = SPEC.match(str(spec).strip())
    if not m:
        raise ValueError(spec)
    port = int(m.group("port")) if m.group("port") else None
    return m.group("user"), m.group("host").strip("[]"), port


def role_of(index: int, count: int, name: str | None = None) -> str:
    if name:
        return f"bastion {name}"
    return "bastion" if count == 1 else f"bastion {index + 1}"


def addr(endpoint) -> str:
    """'bastion 203.0.113.5:22' for a hop, '203.0.113.10:22' for the instance itself."""
    role = getattr(endpoint, "role", "")
    return f"{role} {endpoint.host}:{endpoint.port}" if role else f"{endpoint.host}:{endpoint.port}"


# ---------------------------------------------------------------------- connecting through a hop

def open_channel(hop, transport, target, timeout: float):
    """A `direct-tcpip` channel from `hop` (logged in, `transport`) to the next endpoint's sshd: the socket the
    next SSH handshake runs on."""
    import paramiko

    try:
        return transport.open_channel("direct-tcpip", (target.host, int(target.port)), ("127.0.0.1", 0),
                                      timeout=timeout)
    except paramiko.ChannelException as exc:
        raise Unreachable(f"{target.name}: {addr(hop)} could not reach {addr(target)} ({exc.text or exc})",
                          hint=f"is {target.host}:{target.port} right as the bastion sees it, and does the "
                               f"bastion allow TCP forwarding (AllowTcpForwarding)? The address comes from "
                               f"{target.origin('host')}") from None
    except (paramiko.SSHException, EOFError, OSError) as exc:
        raise Unreachable(f"{target.name}: {addr(hop)} dropped the connection while opening the way to "
                          f"{addr(target)} ({exc or type(exc).__name__})", hint="try again") from None


__all__ = ["Hop", "addr", "open_channel", "parse_spec", "role_of"]
