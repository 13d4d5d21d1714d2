"""Host keys: every SSH connection checks the server's key; nothing is ever accepted silently.

Where the expected key comes from, in order:
  1. the instance's pinned `host_key` ("ssh-ed25519 AAAA...", several allowed, one per line), e.g. a CI
     secret: when set it is the only authority;
  2. the instance's `known_hosts` file, in OpenSSH format (plain, hashed `|1|...` and `[host]:port`
     entries; `@revoked` keys are refused; `@cert-authority` lines are ignored).

First contact with an unknown key fails with the key's type and SHA256 fingerprint and tells the user to
run `orch trust --instance NAME`, which fetches the key (an SSH handshake, no login) and appends it to the
known_hosts file. A key that differs from the recorded one is refused with both fingerprints.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError, RemoteError

# Host-key algorithms a client offers for each key type recorded in known_hosts.
_ALGORITHMS = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256")}


class HostKeyError(RemoteError):
    """The server's host key is not the one we know (or not known at all)."""

    def __init__(self, message: str, hint: str | None = None, *, offered: str | None = None,
                 known: list[str] | None = None):
        super().__init__(message, hint)
        self.offered = offered          # "ssh-ed25519 SHA256:..."
        self.known = known or []


class KnownHostsError(InputError):
    """A known_hosts file or a pinned host_key that cannot be read (bad input, exit 2)."""


class UnknownHostKey(HostKeyError):
    """First contact: no key recorded for this host."""


class ChangedHostKey(HostKeyError):
    """The server offers a key that differs from the recorded or pinned one."""


@dataclass
class KnownKey:
    key_type: str
    blob: bytes
    source: str                          # "known_hosts line 3 of /path" or "host_key (QWEN_GPU_HOST_KEY in .env)"
    revoked: bool = False

    @property
    def fingerprint(self) -> str:
        return fingerprint_blob(self.blob)

    def describe(self) -> str:
        return f"{self.key_type} {self.fingerprint}"


@dataclass
class Expected:
    """The keys an instance's server may present, and where they were recorded."""

    keys: list[KnownKey] = field(default_factory=list)
    pinned: bool = False
    file: Path | None = None

    @property
    def usable(self) -> list[KnownKey]:
        return [k for k in self.keys if not k.revoked]


# ---------------------------------------------------------------------- fingerprints and names

def fingerprint_blob(blob: bytes) -> str:
    """OpenSSH's fingerprint: 'SHA256:' + unpadded base64 of the key blob's SHA-256."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def describe_key(key) -> str:
    """'ssh-ed25519 SHA256:...' for a paramiko key."""
    return f"{key.get_name()} {fingerprint_blob(key.asbytes())}"


def entry_name(host: str, port: int) -> str:
    """The name known_hosts uses: the host for port 22, `[host]:port` otherwise."""
    return host if int(port) == 22 else f"[{host}]:{port}"


def _address(instance) -> str:
    """'203.0.113.10:22', or 'bastion 203.0.113.5:22' for a jump host (a transport.jumps.Hop)."""
    role = getattr(instance, "role", "")
    return f"{role} {instance.host}:{instance.port}" if role else f"{instance.host}:{instance.port}"


def _host_phrase(instance) -> str:
    """'host 203.0.113.10 comes from QWEN_GPU_INSTANCE_IP in .env' or 'host 203.0.113.10 (inventory)'."""
    return f"host {instance.host} comes from {instance.origin('host')}"


# ---------------------------------------------------------------------- known_hosts parsing

def _glob(pattern: str, name: str) -> bool:
    """OpenSSH host patterns: `*` and `?` are wildcards, everything else (e.g. `[host]:port`) is literal."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern.lower())
    return re.fullmatch(regex, name.lower()) is not None


def _host_matches(pattern_field: str, names: tuple[str, ...]) -> bool:
    if pattern_field.startswith("|1|"):
        try:
            _, _, salt, digest = pattern_field.split("|", 3)
            salt_bytes, want = base64.b64decode(salt), base64.b64decode(digest)
        except (ValueError, TypeError):
            return False
        return any(hmac.compare_digest(hmac.new(salt_bytes, n.encode(), hashlib.sha1).digest(), want)
                   for n in names)
    matched = False
    for pattern in pattern_field.split(","):
        negated = pattern.startswith("!")
        pattern = pattern[1:] if negated else pattern
        if any(_glob(pattern, n) for n in names):
            if negated:
                return False
            matched = True
    return matched


def parse_key_text(text: str, source: str) -> list[KnownKey]:
    """Keys from a pinned `host_key` value: 'TYPE BASE64 [comment]' lines (an optional leading host is skipped)."""
    keys = []
    for raw in text.replace(",", "\n").splitlines():
        fields = raw.split()
        if not fields:
            continue
        if not fields[0].startswith(("ssh-", "ecdsa-", "sk-")) and len(fields) >= 3:
            fields = fields[1:]  # "host ssh-ed25519 AAAA..." pasted from a known_hosts file
        if len(fields) < 2:
            raise KnownHostsError(f"{source}: expected 'ssh-ed25519 AAAA...', got {raw.strip()!r}")
        try:
            blob = base64.b64decode(fields[1], validate=True)
        except ValueError:
            raise KnownHostsError(f"{source}: the key after {fields[0]!r} is not valid base64") from None
        keys.append(KnownKey(fields[0], blob, source))
    return keys


def read_known_hosts(path: Path, host: str, port: int) -> list[KnownKey]:
    """Keys recorded for host:port in an OpenSSH known_hosts file (missing file: none)."""
    names = (entry_name(host, port),) if int(port) != 22 else (host,)
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise KnownHostsError(f"cannot read known_hosts file {path}: {exc.strerror}") from None
    keys = []
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        marker = None
        if fields[0].startswith("@"):
            marker, fields = fields[0], fields[1:]
        if len(fields) < 3 or marker == "@cert-authority" or not _host_matches(fields[0], names):
            continue
        try:
            blob = base64.b64decode(fields[2], validate=True)
        except ValueError:
            continue
        keys.append(KnownKey(fields[1], blob, f"{path} line {number}", revoked=marker == "@revoked"))
    return keys


def expected_keys(instance) -> Expected:
    """What the instance's server must present: the pinned key(s), else its known_hosts entries."""
    if instance.host_key:
        origin = instance.origin("host_key")
        return Expected(parse_key_text(instance.host_key, f"host_key ({origin})"), pinned=True)
    path = Path(os.path.expanduser(instance.known_hosts)) if instance.known_hosts else None
    if path is None:
        return Expected()
    return Expected(read_known_hosts(path, instance.host, instance.port), file=path)


def preferred_algorithms(expected: Expected, supported: tuple[str, ...]) -> list[str] | None:
    """Offer the recorded key types first (as OpenSSH does), so the server shows the key we can check."""
    first: list[str] = []
    for key in expected.usable:
        for algorithm in _ALGORITHMS.get(key.key_type, (key.key_type,)):
            if algorithm in supported and algorithm not in first:
                first.append(algorithm)
    if not first:
        return None
    return first + [a for a in supported if a not in first]


# ---------------------------------------------------------------------- the check

def check(instance, server_key, expected: Expected | None = None) -> KnownKey:
    """Accept the server's key only if it is recorded for this instance; raise HostKeyError otherwise."""
    expected = expected or expected_keys(instance)
    offered_type, offered_blob = server_key.get_name(), server_key.asbytes()
    offered = describe_key(server_key)
    for key in expected.keys:
        if key.blob == offered_blob and key.revoked:
            raise ChangedHostKey(
                f"{instance.name}: the server at {_address(instance)} presents {offered}, which is marked "
                f"@revoked in {key.source}", hint="find out why the key was revoked before connecting",
                offered=offered, known=[key.describe()])
        if key.blob == offered_blob:
            return key
    usable = expected.usable
    if not usable:
        where = expected.file or "the known_hosts file"
        raise UnknownHostKey(
            f"{instance.name}: the host key of {_address(instance)} is not known yet: {offered}",
            hint=f"if that is your instance's key (compare it with the EC2 console output or "
                 f"`ssh-keygen -lf /etc/ssh/ssh_host_{offered_type.replace('ssh-', '')}_key.pub` on the box), "
                 f"record it with `orch trust --instance {instance.name}` (writes {where})",
            offered=offered)
    known = ", ".join(f"{k.describe()} ({k.source})" for k in usable)
    if expected.pinned:
        fix = (f"if the instance was rebuilt, update the pinned key ({usable[0].source}); "
               f"otherwise {_host_phrase(instance)}: is it the right instance?")
    else:
        fix = (f"{_host_phrase(instance)}: is it the right instance? If the instance was rebuilt and you "
               f"expect a new key, run `orch trust --instance {instance.name} --replace`")
    raise ChangedHostKey(
        f"{instance.name}: HOST KEY CHANGED for {_address(instance)}: the server presents {offered}, "
        f"but the recorded key is {known}. Refusing to connect",
        hint=fix, offered=offered, known=[k.describe() for k in usable])


# ---------------------------------------------------------------------- orch trust

@dataclass
class TrustResult:
    instance: str
    address: str
    key_type: str
    fingerprint: str
    status: str            # "added", "replaced", "already-known", "matches-pinned"
    file: str | None
    line: str
    hop: str | None = None   # "bastion" (or "bastion 2", "bastion NAME") for a jump host; None: the instance

    def to_json(self) -> dict:
        return {"instance": self.instance, "address": self.address, "key_type": self.key_type,
                "fingerprint": self.fingerprint, "status": self.status, "known_hosts": self.file,
                "hop": self.hop}


def trust(instance, fetch_key, *, replace: bool = False, fingerprint: str | None = None) -> TrustResult:
    """Record the instance's host key (`fetch_key()`: the server's key from a handshake without login, e.g.
    transport.ssh.fetch_host_key) in its known_hosts file, or confirm the pinned one."""
    if instance.transport != "ssh":
        raise InputError(f"{instance.name} uses the {instance.transport} transport: there is no host key to trust")
    key = fetch_key()
    offered = describe_key(key)
    fp = fingerprint_blob(key.asbytes())
    if fingerprint and fingerprint.removeprefix("SHA256:") != fp.removeprefix("SHA256:"):
        raise ChangedHostKey(
            f"{instance.name}: the server at {_address(instance)} presents {offered}, not the fingerprint "
            f"you gave ({fingerprint}). Nothing recorded", hint=f"{_host_phrase(instance)}: is it the right instance?",
            offered=offered)
    line = f"{entry_name(instance.host, instance.port)} {key.get_name()} {key.get_base64()}"
    expected = expected_keys(instance)
    result = TrustResult(instance.name, _address(instance), key.get_name(), fp, "added",
                         str(expected.file) if expected.file else None, line)
    if expected.pinned:
        check(instance, key, expected)  # raises ChangedHostKey naming the variable to update
        result.status = "matches-pinned"
        return result
    if expected.file is None:
        raise InputError(f"{instance.name}: no known_hosts file or host_key configured",
                         hint=f"set instances.{instance.name}.known_hosts (or defaults.known_hosts) in the inventory")
    if any(k.blob == key.asbytes() and not k.revoked for k in expected.keys):
        result.status = "already-known"
        return result
    if any(k.blob == key.asbytes() for k in expected.keys):
        check(instance, key, expected)  # revoked: refuse
    if expected.usable and not replace:
        check(instance, key, expected)  # raises ChangedHostKey with both fingerprints
    _record(expected.file, instance, line, replace=bool(expected.usable))
    result.status = "replaced" if expected.usable else "added"
    return result


def _record(path: Path, instance, line: str, *, replace: bool) -> None:
    """Append `line`; with `replace`, first drop this host's other plain or hashed entries (comments kept)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        old = path.read_text().splitlines()
    except FileNotFoundError:
        old = []
    if replace:
        names = (entry_name(instance.host, instance.port),)
        kept = []
        for text in old:
            fields = text.split()
            body = fields[1:] if fields and fields[0].startswith("@") else fields
            if len(body) >= 3 and not text.lstrip().startswith("#") and _host_matches(body[0], names) \
                    and not (fields[0] == "@revoked"):
                continue
            kept.append(text)
        old = kept
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(f"{t}\n" for t in old) + line + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


__all__ = ["ChangedHostKey", "Expected", "HostKeyError", "KnownHostsError", "KnownKey", "TrustResult",
           "UnknownHostKey", "check", "describe_key", "entry_name", "expected_keys", "fingerprint_blob",
           "preferred_algorithms", "read_known_hosts", "trust"]
