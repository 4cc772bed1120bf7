"""A tiny exchange-rates service on 127.0.0.1 for the I/O job's tests (the standard library's
http.server in a thread): the job makes a real HTTP request, to a server the test controls."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

RATES = {"amount": 1.0, "base": "EUR", "date": "2026-11-30", "rates": {"USD": 1.1, "GBP": 0.85}}


class RatesHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/latest"):
            status, body = 200, json.dumps(RATES).encode()
        else:
            status, body = 200, b"<html>not json</html>"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:  # keep the test output quiet
        pass


@pytest.fixture
def rates_site() -> Iterator[str]:
    """The base URL of a local rates service: ``/latest`` answers like frankfurter.app."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), RatesHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
