"""Keepalives as `ssh` does them (ServerAliveInterval / ServerAliveCountMax): every `interval` seconds of the
connection, a `keepalive@openssh.com` global request that wants a reply; after `count_max` unanswered in a row
the connection is closed, so a dead link (a bastion gone, a NAT that forgot us) ends every command on it in
bounded time -- interval x (count_max + 1) at most -- instead of a read that never returns.

paramiko's own `set_keepalive` sends without asking for a reply, so it cannot notice silence; this does.
"""

from __future__ import annotations

import threading

REQUEST = "keepalive@openssh.com"


class Keepalive:
    def __init__(self, transport, interval: float, count_max: int):
        self.transport, self.interval, self.count_max = transport, float(interval), max(1, int(count_max))
        self.missed = 0
        self.dead = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "Keepalive":
        if self.interval > 0:
            self._thread = threading.Thread(target=self._loop, name="ssh-keepalive", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _ping(self) -> bool:
        """One request wanting a reply; True when the server answered (success or failure) within `interval`."""
        from paramiko.common import cMSG_GLOBAL_REQUEST
        from paramiko.message import Message

        answered = threading.Event()
        self.transport.completion_event = answered     # paramiko sets it on REQUEST_SUCCESS / REQUEST_FAILURE
        m = Message()
        m.add_byte(cMSG_GLOBAL_REQUEST)
        m.add_string(REQUEST)
        m.add_boolean(True)
        try:
            self.transport._send_user_message(m)
        except (OSError, EOFError, Exception):  # noqa: BLE001 - a send on a dead link: counted as unanswered
            return False
        return answered.wait(self.interval)

    def _loop(self) -> None:
        while not self._stop.wait(0 if self.missed else self.interval):   # a miss: ask again at once
            if not self.transport.is_active():
                return
            if self._ping():
                self.missed = 0
                continue
            self.missed += 1
            if self.missed >= self.count_max and not self._stop.is_set():
                self.dead = True
                self.transport.close()
                return


__all__ = ["Keepalive"]
