"""An HTTP/1.1 server on 127.0.0.1 that answers every GET after a fixed delay (scenario 1).

The I/O benchmark keeps up to a thousand keep-alive connections busy at once. A thread per
connection (``ops/local_site.py``) spends more CPU switching than the workers it serves, so
this server is one asyncio event loop in its own process: one ``call_later`` per request, no
coroutine, no thread. It understands just enough HTTP for GET with keep-alive.

Example::

    with serve_delay(delay_ms=100) as url:
        urllib3.request("GET", url)    # 200 "ok\\n" after 100 ms

    $ python -m ops.bench.delay_server --port 8099 --delay-ms 100
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
    b"Connection: keep-alive\r\n\r\nok\n"
)


class _DelayedReply(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float) -> None:
        self.loop = loop
        self.delay = delay
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        # One reply per complete request head; GET requests carry no body.
        while b"\r\n\r\n" in self.buffer:
            _, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            self.loop.call_later(self.delay, self._reply)

    def _reply(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(RESPONSE)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def _serve(port: int, delay: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _DelayedReply(loop, delay), "127.0.0.1", port, backlog=4096, reuse_address=True
    )
    async with server:
        await server.serve_forever()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve_delay(delay_ms: int = 100, *, timeout: float = 10.0) -> Iterator[str]:
    """Run the server in a child process while the block runs; yield its base URL."""
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ops.bench.delay_server",
            "--port",
            str(port),
            "--delay-ms",
            str(delay_ms),
        ],
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"delay server did not start on port {port}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/delay"
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=int, default=100)
    options = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(options.port, options.delay_ms / 1000))


if __name__ == "__main__":
    main()
