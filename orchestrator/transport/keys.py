"""Logging in: which private keys an endpoint (an instance or a bastion) offers, and offering them.

In the order OpenSSH uses:
  * the key file (`key:`, or IdentityFile from ssh_config); an encrypted one is opened with `key_passphrase`
    (e.g. `${QWEN_KEY_PASSPHRASE}` from .env, masked like every secret) or, on a terminal, a prompt (asked once
    per file); a wrong passphrase is bad input (exit 2) naming the file;
  * the keys of the ssh-agent at SSH_AUTH_SOCK, when no key file is given or with `agent: true` (but not with
    `identities_only` and a key file, as IdentitiesOnly means in OpenSSH).
Agent forwarding is never requested: nothing on the instance can use the agent.
"""

from __future__ import annotations

import getpass
import os
import sys
import threading

from .errors import KeyFileError, LoginRefused

_prompted: dict[str, str] = {}
_prompt_lock = threading.Lock()


def _who(endpoint) -> str:
    """'box: bastion' for a hop, 'box:' for the instance itself: what every message starts with."""
    role = getattr(endpoint, "role", "")
    return f"{endpoint.name}: {role}" if role else f"{endpoint.name}:"


def _encrypted(paramiko, path: str) -> bool:
    try:
        paramiko.PKey.from_path(path)
    except paramiko.PasswordRequiredException:
        return True
    except TypeError as exc:          # what `cryptography` raises for an encrypted key without a password
        return "password" in str(exc).lower()
    except Exception:                 # reported by the real load below
        return False
    return False


def _passphrase(endpoint, path: str) -> str:
    if endpoint.key_passphrase:
        return endpoint.key_passphrase
    where = endpoint.origin("key")
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        raise KeyFileError(f"{_who(endpoint)} SSH key {path} is protected by a passphrase",
                           hint="set key_passphrase: ${YOUR_KEY_PASSPHRASE} on the instance (the variable in .env), "
                                f"load the key into ssh-agent, or run on a terminal to be asked; the key comes "
                                f"from {where}")
    with _prompt_lock:
        if path not in _prompted:
            _prompted[path] = getpass.getpass(f"passphrase for {path}: ")
        return _prompted[path]


def load_key_file(endpoint):
    """The endpoint's private key file, opened; a missing, unreadable or locked file is bad input (exit 2)."""
    import paramiko

    path = os.path.expanduser(str(endpoint.key or ""))
    where = endpoint.origin("key")
    if not endpoint.key or not os.path.isfile(path):
        raise KeyFileError(f"{_who(endpoint)} SSH key file {path or '(none)'} does not exist",
                           hint=f"the path comes from {where}; point it at the instance's private key (.pem)")
    if not os.access(path, os.R_OK):
        raise KeyFileError(f"{_who(endpoint)} cannot read SSH key {path} (permission denied)",
                           hint=f"check the file's owner and mode (chmod 600); the path comes from {where}")
    secret = None
    if _encrypted(paramiko, path):
        secret = _passphrase(endpoint, path)
    try:
        return paramiko.PKey.from_path(path, secret.encode() if secret is not None else None)
    except PermissionError:
        raise KeyFileError(f"{_who(endpoint)} cannot read SSH key {path} (permission denied)",
                           hint=f"check the file's owner and mode (chmod 600); the path comes from {where}") from None
    except (paramiko.SSHException, ValueError, TypeError, OSError) as exc:
        if secret is not None:
            source = endpoint.origin("key_passphrase") if endpoint.key_passphrase else "the passphrase typed"
            raise KeyFileError(f"{_who(endpoint)} wrong passphrase for SSH key {path}",
                               hint=f"the passphrase comes from {source}; `ssh-keygen -y -f {path}` checks it"
                               ) from None
        raise KeyFileError(f"{_who(endpoint)} {path} is not a private key paramiko can read ({exc})",
                           hint=f"the path comes from {where}; it must be the private half (not the .pub)") from None


def _use_agent(endpoint) -> bool:
    if endpoint.agent is False:
        return False
    if endpoint.key and (endpoint.agent is None or endpoint.identities_only):
        return False
    return True


def credentials(endpoint) -> tuple[list[tuple[str, object]], object | None]:
    """([(description, key)], agent to close): what to offer, checked before any network traffic."""
    import paramiko

    offered: list[tuple[str, object]] = []
    if endpoint.key:
        offered.append((f"the key {os.path.expanduser(endpoint.key)}", load_key_file(endpoint)))
    agent = None
    if _use_agent(endpoint):
        if not os.environ.get("SSH_AUTH_SOCK"):
            if not offered:
                raise KeyFileError(f"{_who(endpoint)} no SSH key: no key file is set and no ssh-agent is running "
                                   "(SSH_AUTH_SOCK is not set)",
                                   hint=f"set instances.{endpoint.name}.key (or IdentityFile in ssh_config), or "
                                        "start ssh-agent and `ssh-add` the key")
        else:
            agent = paramiko.Agent()
            agent_keys = agent.get_keys()
            offered += [(f"the ssh-agent key {k.get_name()} {k.fingerprint}", k) for k in agent_keys]
            if not offered:
                agent.close()
                raise KeyFileError(f"{_who(endpoint)} the ssh-agent at SSH_AUTH_SOCK holds no key and no key "
                                   "file is set", hint="`ssh-add KEYFILE`, or set the instance's key")
    return offered, agent


def authenticate(endpoint, transport, offered=None) -> str:
    """Log in on `transport` with each key in turn; the description of the key that worked."""
    import paramiko

    agent = None
    if offered is None:
        offered, agent = credentials(endpoint)
    try:
        for description, key in offered:
            try:
                transport.auth_publickey(endpoint.user, key)
                return description
            except paramiko.AuthenticationException:
                continue
            except (paramiko.SSHException, EOFError, OSError) as exc:
                raise LoginRefused(f"{_who(endpoint)} login to {endpoint.host}:{endpoint.port} failed: "
                                   f"{exc or type(exc).__name__}",
                                   hint=f"the user comes from {endpoint.origin('user')}") from None
    finally:
        if agent is not None:
            agent.close()
    tried = " and ".join(d for d, _ in offered)
    raise LoginRefused(
        f"{_who(endpoint)} {endpoint.user}@{endpoint.host}:{endpoint.port} refused {tried}",
        hint=f"the key comes from {endpoint.origin('key')}, the user from {endpoint.origin('user')}: is this "
             "the key pair the box was launched with, and the right login (`ubuntu` on Ubuntu AMIs, `ec2-user` "
             "on Amazon Linux)?")


__all__ = ["authenticate", "credentials", "load_key_file"]
