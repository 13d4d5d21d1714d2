"""`orch trust` for an instance, through its bastions when it has any (see jumps.py).

Each endpoint's key is fetched over the previous hop (a handshake, no login), recorded in its known_hosts file
(or checked against its pin) by `hostkeys.trust`, and only then is that hop logged in to, to reach the next.
"""

from __future__ import annotations

from ..errors import InputError


def trust_chain(instance, *, replace: bool = False, fingerprint: str | None = None, timeout: float | None = None):
    """`orch trust` through the instance's hops: each endpoint's key is fetched over the previous hop (a
    handshake, no login), recorded (or checked against its pin), and only then logged in to. Returns the
    `TrustResult` of every endpoint, the instance's last; `fingerprint` applies to the instance's key."""
    from .. import hostkeys
    from . import keys
    from .jumps import open_channel
    from .ssh import open_socket, start_transport

    endpoints = [*instance.hops, instance]
    results, opened = [], []
    timeout = timeout if timeout is not None else float(instance.connect_timeout)
    try:
        sock = open_socket(endpoints[0], timeout)
        for i, endpoint in enumerate(endpoints):
            last = i == len(endpoints) - 1
            try:
                expected = hostkeys.expected_keys(endpoint)
            except InputError:
                expected = None
            transport = start_transport(endpoint, sock, expected, timeout)
            opened.append(transport)
            key = transport.get_remote_server_key()
            result = hostkeys.trust(endpoint, lambda: key, replace=replace, fingerprint=fingerprint if last else None)
            result.hop = getattr(endpoint, "role", "") or None
            results.append(result)
            if last:
                break
            keys.authenticate(endpoint, transport)
            sock = open_channel(endpoint, transport, endpoints[i + 1], timeout)
    finally:
        for transport in reversed(opened):
            transport.close()
    return results


__all__ = ["trust_chain"]
