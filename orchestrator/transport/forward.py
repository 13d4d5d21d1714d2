"""A local port that reaches a port on the instance through the transport -- `ssh -L` without ssh.

    with Forward(transport, remote_port=8000) as fwd:      # fwd.local_port: 127.0.0.1's port on this machine
        ...

Over SSH every connection to the local port becomes one `direct-tcpip` channel of the transport's one
connection (host keys checked once, at connect), so a server bound to the instance's 127.0.0.1 is reached
without opening any port on the instance. On a local instance the "remote" port is this machine's and
connections are relayed to it. The local side listens on 127.0.0.1 only.
"""

from __future__ import annotations

import socket
import threading

from ..errors import InputError, RemoteError

CHUNK = 64 * 1024


class Forward:
    def __init__(self, transport, remote_port: int, *, local_port: int = 0, remote_host: str = "127.0.0.1"):
        self.transport, self.remote_host, self.remote_port = transport, remote_host, int(remote_port)
        self.requested = int(local_port)
        self.local_port: int | None = None
        self.connections = 0
        self._server: socket.socket | None = None
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> "Forward":
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            server.bind(("127.0.0.1", self.requested))
        except OSError as exc:
            server.close()
            raise InputError(f"cannot listen on 127.0.0.1:{self.requested}: {exc.strerror or exc}",
                             hint="choose another --local-port (0 picks a free one)") from None
        server.listen(16)
        server.settimeout(0.2)
        self._server, self.local_port = server, server.getsockname()[1]
        accept = threading.Thread(target=self._accept, name="forward-accept", daemon=True)
        accept.start()
        self._threads.append(accept)
        return self

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._server.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(client,), name="forward-conn", daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = self.transport.open_tcp(self.remote_host, self.remote_port)
        except (RemoteError, OSError):
            client.close()
            return
        pumps = [threading.Thread(target=pump, args=(client, upstream), daemon=True),
                 threading.Thread(target=pump, args=(upstream, client), daemon=True)]
        for thread in pumps:
            thread.start()
        for thread in pumps:
            thread.join()
        for end in (client, upstream):
            try:
                end.close()
            except OSError:
                pass

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.close()
            self._server = None

    def __enter__(self) -> "Forward":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def pump(source, sink) -> None:
    """Copy bytes until `source` ends; then tell `sink` no more is coming."""
    try:
        while True:
            data = source.recv(CHUNK)
            if not data:
                break
            sink.sendall(data)
    except (OSError, EOFError):
        pass
    try:
        sink.shutdown(socket.SHUT_WR) if isinstance(sink, socket.socket) else sink.shutdown_write()
    except (OSError, EOFError):
        pass
