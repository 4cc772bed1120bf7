"""A small HTTP server on 127.0.0.1 for the demo, the tests and the benchmarks.

Real I/O jobs need a real server to talk to, and this machine may reach nothing else. Paths:

- ``/page/<n>``: a deterministic page of English-like prose (``n`` seeds it; ``?words=`` sizes it)
- ``/delay/<ms>``: answers after ``ms`` milliseconds, like a slow API
- ``/bytes/<n>``: ``n`` bytes, to exercise size caps
- ``/status/<code>``: an empty response with that status
- ``/redirect/<n>``: a 302 to ``/page/<n>``

Example::

    with serve_local_site() as site:
        print(site.url("/page/7"))   # http://127.0.0.1:40321/page/7
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

VOCABULARY = (
    "queue worker job redis broker message pool process greenlet thread core memory latency "
    "throughput backlog producer consumer signal retry limit rate token bucket prefetch ack "
    "result event flower cluster container scale network socket request response server "
    "client timeout deadline window burst shard replica persistence journal snapshot lease"
).split()
GLUE = "the a of to and in is that for with on as by it from at this".split()


def prose(seed: int, words: int) -> str:
    """Deterministic English-like text: the same ``seed`` always gives the same page."""
    rng = random.Random(seed)
    sentences, count = [], 0
    while count < words:
        length = rng.randint(6, 18)
        picked = [rng.choice(VOCABULARY if rng.random() < 0.6 else GLUE) for _ in range(length)]
        sentences.append(" ".join(picked).capitalize() + rng.choice(".!?"))
        count += length
    return " ".join(sentences)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real APIs do

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        segments = [s for s in parts.path.split("/") if s]
        query = parse_qs(parts.query)
        try:
            kind, arg = segments[0], int(segments[1])
        except (IndexError, ValueError):
            self._send(404, b"not found\n")
            return
        if kind == "page":
            words = int(query.get("words", ["2000"])[0])
            self._send(200, prose(arg, words).encode(), "text/plain; charset=utf-8")
        elif kind == "delay":
            time.sleep(arg / 1000)
            self._send(200, b"ok\n")
        elif kind == "bytes":
            self._send(200, b"x" * arg, "application/octet-stream")
        elif kind == "status":
            self._send(arg, b"")
        elif kind == "redirect":
            self.send_response(302)
            self.send_header("Location", f"/page/{arg}")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._send(404, b"not found\n")

    def _send(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # thousands of requests per run: per-request logs would drown everything else


@dataclass
class LocalSite:
    """A running local site."""

    server: ThreadingHTTPServer

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # hundreds of greenlets connect at once


@contextmanager
def serve_local_site(port: int = 0) -> Iterator[LocalSite]:
    """Serve on 127.0.0.1 (a free port by default) in a background thread while the block runs."""
    server = _Server(("127.0.0.1", port), _Handler)
    thread = threading.Thread(target=server.serve_forever, name="local-site", daemon=True)
    thread.start()
    try:
        yield LocalSite(server)
    finally:
        server.shutdown()
        server.server_close()
