"""The SSH transport: one paramiko connection per instance, reused for every command.

Host keys are checked by `orchestrator.hostkeys` before any credential is sent; nothing here ever accepts
an unknown key (no auto-add or warn-only policy). Commands are argument lists joined with
`shlex.join`, so inventory values never reach the remote shell unquoted. `open()` gives a raw exec
channel (bytes, large window and packets) for streaming archives.

Every failure becomes a `RemoteError` (or `InputError` for a bad key file) that names the instance, what
failed and which setting to look at.
"""

from __future__ import annotations

import errno
import logging
import re
import shlex
import socket
import subprocess
import threading
import time

from .. import hostkeys
from ..errors import InputError, RemoteError
from . import jumps, keys
from .base import Result, Stalled, command_failed
from .errors import Timeout, Unreachable
from .jumps import addr
from .keepalive import Keepalive

# paramiko logs handshake/auth failures at ERROR; we report them ourselves, once, as clear errors.
logging.getLogger("paramiko").addHandler(logging.NullHandler())
logging.getLogger("paramiko").propagate = False

WINDOW_SIZE = 64 * 1024 * 1024       # per channel: keep the server sending while we write to disk
MAX_PACKET_SIZE = 256 * 1024         # largest SSH packet we accept: fewer packets, less Python per MB
READ_CHUNK = 4 * 1024 * 1024
INLINE_STDIN = 1024 * 1024           # smaller stdin is written before reading (the server's window is 2 MB)
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Fast AEAD ciphers first (one C call per packet instead of cipher + separate HMAC).
PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes256-ctr")


def _paramiko():
    """Import paramiko on first use (it is on the start-up path of every SSH command, so not at import).

    Call it from the main thread before starting threads that import boto3, so the two imports never race.
    """
    import paramiko

    return paramiko

def _connect_timeout(instance, timeout: float | None) -> float:
    """The explicit timeout, else the instance's `connect_timeout` (inventory, or ORCH_SSH_CONNECT_TIMEOUT)."""
    return timeout if timeout is not None else float(instance.connect_timeout)


def _addr(instance) -> str:
    """'203.0.113.10:22', or 'bastion 203.0.113.5:22' for a jump host."""
    return addr(instance)


def command_line(argv: list[str], env: dict[str, str] | None = None, cwd: str | None = None) -> str:
    """The remote shell command for argv: every value quoted; env as `env K=V ...`; cwd as `cd DIR &&`.

    `exec` makes the command sshd's direct child, so a "signal" request (kill) reaches it, not a shell.
    """
    if not argv:
        raise ValueError("empty command")
    words = [str(a) for a in argv]
    if env:
        for name in env:
            if not ENV_NAME.match(name):
                raise InputError(f"bad environment variable name {name!r} for a remote command")
        words = ["env", *(f"{k}={v}" for k, v in env.items()), *words]
    line = "exec " + shlex.join(words)
    if cwd:
        line = f"cd {shlex.quote(str(cwd))} && {line}"
    return line


# ---------------------------------------------------------------------- connecting

def open_socket(instance, timeout: float | None = None) -> socket.socket:
    """A TCP connection to the instance's sshd, TCP_NODELAY on; failures say what to check."""
    timeout = _connect_timeout(instance, timeout)
    host, port = instance.host, int(instance.port)
    at = _addr(instance)
    hint_host = f"the host comes from {instance.origin('host')}, the port from {instance.origin('port')}"
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except socket.gaierror as exc:
        what = getattr(instance, "role", "") or "host"
        raise Unreachable(f"{instance.name}: cannot resolve {what} {host!r} ({exc.strerror})",
                          hint=f"{hint_host}; is the address right?") from None
    except ConnectionRefusedError:
        raise Unreachable(f"{instance.name}: connection refused by {at} (nothing listens on that port)",
                          hint=f"is the instance running and sshd up? {hint_host}") from None
    except (socket.timeout, TimeoutError):
        raise Timeout(f"{instance.name}: no answer from {at} within {timeout:g} s",
                          hint=f"is the instance running, and does its security group allow SSH from this "
                               f"machine? {hint_host}") from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            reason = f"host unreachable ({reason})"
        raise Unreachable(f"{instance.name}: cannot connect to {at}: {reason}",
                          hint=f"{hint_host}; is the instance running?") from None
    # Nagle + delayed ACKs cost ~45 ms per command that sends stdin; measured on loopback: 51 ms -> 6 ms
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    return sock


def start_transport(instance, sock: socket.socket, expected=None, timeout: float | None = None):
    """SSH handshake on `sock` (no login yet). `expected` (hostkeys.Expected) orders the host-key types."""
    paramiko = _paramiko()

    timeout = _connect_timeout(instance, timeout)
    transport = paramiko.Transport(sock, default_window_size=WINDOW_SIZE,
                                   default_max_packet_size=MAX_PACKET_SIZE)
    transport.banner_timeout = transport.handshake_timeout = transport.auth_timeout = timeout
    options = transport.get_security_options()
    options.ciphers = tuple(c for c in PREFERRED_CIPHERS if c in options.ciphers) + tuple(
        c for c in options.ciphers if c not in PREFERRED_CIPHERS)
    if expected is not None:
        order = hostkeys.preferred_algorithms(expected, tuple(options.key_types))
        if order:
            options.key_types = order
    try:
        transport.start_client(timeout=timeout)
        if not transport.initial_kex_done:   # paramiko returns quietly when its own timeout runs out
            raise socket.timeout("timeout")
    except (paramiko.SSHException, EOFError, OSError) as exc:
        transport.close()
        text = str(exc) or type(exc).__name__
        kind = Unreachable
        if "banner" in text.lower():
            message = f"{instance.name}: {_addr(instance)} accepted the connection but did not answer as an SSH server"
        elif isinstance(exc, (socket.timeout, TimeoutError)) or "timeout" in text.lower():
            message = f"{instance.name}: SSH handshake with {_addr(instance)} timed out after {timeout:g} s"
            kind = Timeout
        else:
            message = f"{instance.name}: SSH handshake with {_addr(instance)} failed: {text}"
        raise kind(message, hint=f"is {_addr(instance)} the instance's sshd? The host comes from "
                                 f"{instance.origin('host')}, the port from {instance.origin('port')}") from None
    return transport


def load_key(instance):
    """The instance's private key file, opened (see keys.py: passphrases, bad input)."""
    from .keys import load_key_file

    return load_key_file(instance)


def fetch_host_key(instance, timeout: float | None = None):
    """The server's host key, from an SSH handshake without logging in (for `orch trust`)."""
    sock = open_socket(instance, timeout)
    transport = None
    try:
        try:
            expected = hostkeys.expected_keys(instance)
        except InputError:
            expected = None
        transport = start_transport(instance, sock, expected, timeout)
        return transport.get_remote_server_key()
    finally:
        if transport is not None:
            transport.close()
        sock.close()


# ---------------------------------------------------------------------- a streaming process

class ConnectionLost(ConnectionError):
    """The SSH connection went away (or was closed) while a streaming command was still running."""


def _kill_channel(chan) -> None:
    """Send the "signal" channel request (RFC 4254 6.9) for SIGKILL, then close the channel.

    Without it a command whose channel closes keeps running: there is no pty to hang up.
    """
    if chan.closed:
        return
    try:
        from paramiko.common import cMSG_CHANNEL_REQUEST
        from paramiko.message import Message

        m = Message()
        m.add_byte(cMSG_CHANNEL_REQUEST)
        m.add_int(chan.remote_chanid)
        m.add_string("signal")
        m.add_boolean(False)
        m.add_string("KILL")
        chan.transport._send_user_message(m)
    except Exception:  # best effort: an old server ignores it, a dead connection cannot carry it
        pass
    chan.close()


class SshProcess:
    """A remote command on a raw exec channel: binary stdin/stdout, stderr collected in the background.

    A connection that is lost (or closed by us) mid-stream raises `ConnectionLost` (a ConnectionError,
    as a socket or pipe would) instead of looking like the end of the stream: a short read must never
    pass for a complete one. The caller knows what was being streamed and turns it into its own error.
    """

    def __init__(self, instance_name: str, argv: list[str], channel, owner: "SshTransport | None" = None):
        self.instance_name, self.argv, self._chan, self._owner = instance_name, argv, channel, owner
        self._pending = b""
        self._err = bytearray()
        self._err_reader = threading.Thread(target=self._drain_stderr, daemon=True)
        self._err_reader.start()

    def _drain_stderr(self) -> None:
        """Collect stderr until it ends. `set_timeout` also times out this reader (paramiko has one timeout per
        channel): a quiet stderr is waited on again, not taken for its end, so progress written later is kept."""
        while True:
            try:
                chunk = self._chan.recv_stderr(65536)
            except socket.timeout:
                if self._chan.closed or self._connection_gone():
                    return
                continue
            except (OSError, EOFError):
                return
            if not chunk:
                return
            self._err += chunk

    def _lost(self) -> "ConnectionLost":
        return ConnectionLost(f"{self.instance_name}: the SSH connection was lost while `{self.argv[0]}` was running")

    def _connection_gone(self) -> bool:
        closed_here = self._owner is not None and self._owner._transport is None
        return closed_here or not self._chan.transport.is_active()

    def set_timeout(self, seconds: float | None) -> None:
        self._timeout = seconds
        self._chan.settimeout(seconds)

    _timeout: float | None = None

    def _recv(self, n: int) -> bytes:
        if self._owner is not None and self._owner._transport is None:
            raise self._lost()          # closed by us: what is still buffered is not a finished stream
        try:
            data = self._chan.recv(n)
        except socket.timeout:
            if self._connection_gone():
                raise self._lost() from None
            raise Stalled(self._timeout or 0) from None
        if not data and self._chan.exit_status == -1 and self._connection_gone():
            raise self._lost()          # EOF without an exit status: the connection dropped
        return data

    def write(self, data: bytes) -> None:
        try:
            self._chan.sendall(data)
        except OSError as exc:
            if self._connection_gone():
                raise self._lost() from None
            raise RemoteError(f"{self.instance_name}: `{self.argv[0]}` stopped reading its input ({exc}); "
                              f"stderr: {self.stderr_text()[-500:].strip() or '(empty)'}") from None

    def close_stdin(self) -> None:
        if not self._chan.closed:
            self._chan.shutdown_write()

    def read(self, n: int = READ_CHUNK) -> bytes:
        if self._pending:
            data, self._pending = self._pending[:n], self._pending[n:]
            return data
        return self._recv(n)

    def readline(self) -> bytes:
        while b"\n" not in self._pending:
            chunk = self._recv(65536)
            if not chunk:
                line, self._pending = self._pending, b""
                return line
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line + b"\n"

    def wait(self, timeout: float | None = None) -> int:
        if not self._chan.status_event.wait(timeout):
            raise subprocess.TimeoutExpired(self.argv, timeout)
        self._err_reader.join(5)
        if self._chan.exit_status == -1 and self._connection_gone() and not self._killed:
            raise self._lost()
        return self._chan.recv_exit_status()

    def stderr_text(self) -> str:
        return self._err.decode("utf-8", "replace")

    _killed = False

    def kill(self) -> None:
        """Ask sshd to SIGKILL the command (OpenSSH >= 7.9 honours it), then close the channel."""
        self._killed = True
        _kill_channel(self._chan)


# ---------------------------------------------------------------------- the transport

class SshTransport:
    """Transport over one SSH connection. `connect()` happens on first use (or explicitly)."""

    def __init__(self, instance, *, connect_timeout: float | None = None):
        self.instance = instance
        self.instance_name = instance.name
        self.commands_run = 0
        self.connect_timeout = connect_timeout
        self.host_key = None        # hostkeys.KnownKey that matched
        self.server_key = None      # the server's paramiko key
        self.hop_keys: list = []    # (endpoint, server key, hostkeys.KnownKey) for every hop and the instance
        self._transport = None
        self._hops: list = []       # the bastions' paramiko transports, first hop first
        self._keepalives: list = []
        self._lock = threading.Lock()

    # -- connection

    def connect(self) -> "SshTransport":
        with self._lock:
            if self._transport is not None and self._transport.is_active():
                return self
            self._close_all()
            self._transport = self._connect()
        return self

    @property
    def endpoints(self) -> list:
        """The bastions (instance.hops), then the instance: the order connections are made in."""
        return [*getattr(self.instance, "hops", []), self.instance]

    def _connect(self):
        """Keys, recorded host keys, then for each endpoint (every bastion, then the instance): handshake,
        host-key check, login, and a `direct-tcpip` channel on to the next one. Each failure its own type:
        KeyFileError / hostkeys.KnownHostsError (bad input), Unreachable / Timeout, HostKeyError, LoginRefused,
        each naming the hop it happened at."""
        endpoints = self.endpoints
        timeout = self.connect_timeout
        opened: list = []
        prepared: list = []
        try:
            # bad input (a missing key, a wrong passphrase, a broken known_hosts) before any network traffic
            for endpoint in endpoints:
                prepared.append((endpoint, keys.credentials(endpoint), None))
                prepared[-1] = (endpoint, prepared[-1][1], hostkeys.expected_keys(endpoint))
            sock = open_socket(endpoints[0], timeout)
            for i, (endpoint, (offered, agent), expected) in enumerate(prepared):
                try:
                    transport = start_transport(endpoint, sock, expected, timeout)
                except BaseException:
                    sock.close()
                    raise
                opened.append(transport)
                server_key = transport.get_remote_server_key()
                known = hostkeys.check(endpoint, server_key, expected)   # raises on unknown/changed
                self.hop_keys.append((endpoint, server_key, known))
                if endpoint is self.instance:
                    self.server_key, self.host_key = server_key, known
                keys.authenticate(endpoint, transport, offered)
                if agent is not None:
                    agent.close()
                self._keepalives.append(Keepalive(transport, endpoint.server_alive_interval,
                                                  endpoint.server_alive_count_max).start())
                if i + 1 < len(prepared):
                    sock = jumps.open_channel(endpoint, transport, endpoints[i + 1],
                                              _connect_timeout(endpoint, timeout))
            self._hops = opened[:-1]
            return opened[-1]
        except BaseException:
            for _, (_, agent), _ in prepared:
                if agent is not None:
                    agent.close()
            for keepalive in self._keepalives:
                keepalive.stop()
            self._keepalives = []
            for transport in reversed(opened):
                transport.close()
            raise

    def _close_all(self) -> None:
        for keepalive in self._keepalives:
            keepalive.stop()
        for transport in [self._transport, *reversed(self._hops)]:
            if transport is not None:
                transport.close()
        self._transport, self._hops, self._keepalives, self.hop_keys = None, [], [], []

    def _channel(self):
        paramiko = _paramiko()

        self.connect()
        try:
            return self._transport.open_session(window_size=WINDOW_SIZE, max_packet_size=MAX_PACKET_SIZE,
                                                timeout=_connect_timeout(self.instance, self.connect_timeout))
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise RemoteError(f"{self.instance_name}: the SSH connection to {_addr(self.instance)} was lost "
                              f"({exc or type(exc).__name__})", hint="run the command again") from None

    def open_tcp(self, host: str, port: int):
        """A `direct-tcpip` channel to `host:port` as the instance sees it (its 127.0.0.1 included)."""
        paramiko = _paramiko()

        self.connect()
        try:
            return self._transport.open_channel("direct-tcpip", (host, int(port)), ("127.0.0.1", 0),
                                                timeout=_connect_timeout(self.instance, self.connect_timeout))
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise RemoteError(f"{self.instance_name}: cannot reach {host}:{port} on the instance through SSH "
                              f"({exc or type(exc).__name__})",
                              hint="is the server up on the instance? (sshd must allow TCP forwarding: "
                                   "AllowTcpForwarding yes, its default)") from None

    def close(self) -> None:
        with self._lock:
            self._close_all()

    def __enter__(self) -> "SshTransport":
        return self.connect()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- commands

    def run(self, argv, *, stdin=None, env=None, cwd=None, timeout=None, check=True) -> Result:
        SSHException = _paramiko().SSHException

        line = command_line(argv, env, cwd)
        chan = self._channel()
        self.commands_run += 1
        deadline = None if timeout is None else time.monotonic() + timeout
        out, err = bytearray(), bytearray()
        writer = None
        try:
            chan.exec_command(line)
            if stdin and len(stdin) > INLINE_STDIN:
                writer = threading.Thread(target=self._feed, args=(chan, stdin), daemon=True)
                writer.start()
            else:
                if stdin:
                    chan.sendall(stdin)
                chan.shutdown_write()
            err_reader = threading.Thread(target=self._collect_stderr, args=(chan, err), daemon=True)
            err_reader.start()
            while True:
                chan.settimeout(None if deadline is None else max(0.0, deadline - time.monotonic()))
                chunk = chan.recv(READ_CHUNK)
                if not chunk:
                    break
                out += chunk
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not chan.status_event.wait(remaining):
                raise socket.timeout()
            err_reader.join(remaining if remaining is not None else 30)
            code = chan.recv_exit_status()
        except (socket.timeout, TimeoutError):
            _kill_channel(chan)
            raise RemoteError(f"{self.instance_name}: `{argv[0]}` did not finish within {timeout:g} s",
                              hint="the instance may be overloaded; try again or raise the timeout") from None
        except (SSHException, EOFError, OSError) as exc:
            raise RemoteError(f"{self.instance_name}: the SSH connection to {_addr(self.instance)} broke while "
                              f"running `{argv[0]}` ({exc or type(exc).__name__})") from None
        finally:
            chan.close()
        result = Result(list(argv), code, bytes(out), bytes(err))
        if check and not result.ok:
            raise command_failed(self.instance_name, result)
        return result

    @staticmethod
    def _feed(chan, data: bytes) -> None:
        try:
            chan.sendall(data)
            chan.shutdown_write()
        except (OSError, EOFError):
            pass  # the command exited early; its exit code says why

    @staticmethod
    def _collect_stderr(chan, err: bytearray) -> None:
        try:
            for chunk in iter(lambda: chan.recv_stderr(65536), b""):
                err += chunk
        except (OSError, EOFError):
            pass

    def open(self, argv, *, env=None, cwd=None) -> SshProcess:
        SSHException = _paramiko().SSHException

        line = command_line(argv, env, cwd)
        chan = self._channel()
        self.commands_run += 1
        try:
            chan.exec_command(line)
        except (SSHException, EOFError, OSError) as exc:
            chan.close()
            raise RemoteError(f"{self.instance_name}: cannot start `{argv[0]}` ({exc or type(exc).__name__})") from None
        return SshProcess(self.instance_name, list(argv), chan, self)
