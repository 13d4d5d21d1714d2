"""What can go wrong reaching an instance, as types a caller can tell apart (preflight turns each into its own
check). All are RemoteError (exit 1); a bad key file or known_hosts file is InputError (exit 2)."""

from __future__ import annotations

from ..errors import InputError, RemoteError


class Unreachable(RemoteError):
    """No SSH server answered: a name that does not resolve, a refused or silent port, not an SSH server."""


class Timeout(Unreachable):
    """The server did not answer in time (connect or handshake)."""


class LoginRefused(RemoteError):
    """The server answered and its host key is the recorded one, but it refused the login."""


class KeyFileError(InputError):
    """The private key file named by the inventory cannot be used (missing, unreadable, not a key)."""


__all__ = ["KeyFileError", "LoginRefused", "Timeout", "Unreachable"]
