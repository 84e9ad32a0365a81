"""Slow clients, as an attacker runs them: sockets that announce a body and trickle it.

Shared by tests/test_adversarial_slow_clients.py and bench/slow_clients.py.
"""

from __future__ import annotations

import contextlib
import socket
import threading

ANNOUNCED = 100  # bytes each slow request announces; it sends 2, then one a second


class SlowClients:
    """`count` sockets trickling a body one byte a second; reopened whenever the server cuts one."""

    def __init__(self, port: int, count: int) -> None:
        self.port, self.count = port, count
        self.cut = 0
        self.answered_408 = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _open(self) -> tuple[socket.socket, int]:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        sock.sendall(b"POST /webhook/event HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n{\"" % ANNOUNCED)
        sock.setblocking(False)
        return sock, 2

    def start(self) -> None:
        self.sockets = [self._open() for _ in range(self.count)]
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            for i, (sock, sent) in enumerate(self.sockets):
                if not self._cut(sock) and sent < ANNOUNCED - 1:
                    try:
                        sock.send(b" ")
                        self.sockets[i] = (sock, sent + 1)
                        continue
                    except OSError:
                        self.cut += 1
                sock.close()
                with contextlib.suppress(OSError):  # if not, tried again on the next round
                    self.sockets[i] = self._open()

    def _cut(self, sock: socket.socket) -> bool:
        """Whether the server answered (408) or closed this socket; counts it in `cut`."""
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        self.cut += 1
        if data.startswith(b"HTTP/1.1 408"):
            self.answered_408 += 1
        return True

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for sock, _ in self.sockets:
            sock.close()
