"""A loopback TCP proxy in front of Redis that loses the reply to a chosen command.

It forwards every byte both ways between clients and a Redis on 127.0.0.1, except once (or
``drops`` times): when a client sends a command whose bytes contain ``marker``, the proxy lets
Redis execute it, reads Redis's reply, throws the reply away and closes the client's
connection. The client sees a broken connection although its command was applied, which is
what a network cut or a producer timeout looks like at the worst moment. An error reply (a
command Redis did not apply, such as ``NOSCRIPT``) is passed on and does not count.

Used by ``jobq faults lost-reply-submit`` and the tests of idempotency keys. Loopback only.

Example::

    with ReplyDropProxy(redis_port=6390, marker=b"kwargsrepr") as proxy:
        env["REDIS_URL"] = f"redis://127.0.0.1:{proxy.port}/0"
        ...  # a submit through it loses the reply to its enqueue
        assert proxy.dropped == 1
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

LOOPBACK = "127.0.0.1"
CHUNK = 65536


class ReplyDropProxy:
    """Forward 127.0.0.1:``port`` to 127.0.0.1:``redis_port``; lose ``drops`` replies."""

    def __init__(self, redis_port: int, marker: bytes, drops: int = 1) -> None:
        self.redis_port = redis_port
        self.marker = marker
        self.drops_left = drops
        self.dropped = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server((LOOPBACK, 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name="reply-drop-accept").start()

    def __enter__(self) -> ReplyDropProxy:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop accepting and cut every open connection."""
        self._closed = True
        self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _close(sock)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection((LOOPBACK, self.redis_port))
            with self._lock:
                self._sockets += [client, server]
            swallow = threading.Event()  # the next reply on this connection is to be lost
            threading.Thread(
                target=self._upstream, args=(client, server, swallow), daemon=True
            ).start()
            threading.Thread(
                target=self._downstream, args=(client, server, swallow), daemon=True
            ).start()

    def _upstream(
        self, client: socket.socket, server: socket.socket, swallow: threading.Event
    ) -> None:
        while data := _recv(client):
            with self._lock:
                if self.drops_left > 0 and self.marker in data:
                    swallow.set()  # set before Redis can answer
            try:
                server.sendall(data)
            except OSError:
                break
        _close(client, server)

    def _downstream(
        self, client: socket.socket, server: socket.socket, swallow: threading.Event
    ) -> None:
        while data := _recv(server):
            if swallow.is_set():
                swallow.clear()
                if not data.startswith(b"-"):  # applied: lose the reply, cut the client
                    with self._lock:
                        applied = self.drops_left > 0
                        if applied:
                            self.drops_left -= 1
                            self.dropped += 1
                    if applied:
                        break
            try:
                client.sendall(data)
            except OSError:
                break
        _close(client, server)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(CHUNK)
    except OSError:
        return b""


def _close(*sockets: socket.socket) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):  # already closed by the other side
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
