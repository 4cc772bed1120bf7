"""``fetch_url``: an HTTP GET with a timeout, a size cap and redirects (I/O pool).

The client is geventhttpclient (the one Locust's FastHttpUser uses): a C HTTP parser on gevent
sockets, keep-alive connections pooled per host. Measured on the benchmark's 100 ms server it
spends 0.32 ms of CPU per request where urllib3 spent 0.80 ms, and on the I/O pool the CPU per
job is what bounds throughput (docs/benchmarks.md). Under the gevent pool its sockets yield to
other greenlets, so one process keeps hundreds of requests in flight; outside gevent (tests,
a prefork pipeline step) it simply blocks. Every call is bounded by ``timeout`` as a whole:
gevent's hard time limit fires only where a job yields, so a request without one could hold a
greenlet forever. HTTPS certificates are verified.

Example::

    $ jobq submit fetch_url url=http://127.0.0.1:8000/ --wait
"""

from __future__ import annotations

import hashlib
import time
from functools import lru_cache
from typing import Annotated, Any
from urllib.parse import urljoin

import gevent
from celery import current_task
from geventhttpclient import HTTPClient
from geventhttpclient.url import URL
from pydantic import AfterValidator, Field

from workers.registry import io_job
from workers.registry.rates import by_host
from workers.settings import get_settings
from workers.stores.kept_pages import keep_page

HttpUrl = Annotated[str, Field(pattern=r"^https?://[^\s/$.?#].[^\s]*$", max_length=2048)]
MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
CONNECT_TIMEOUT = 5.0
CHUNK = 64 * 1024


def within_fetch_cap(max_bytes: int | None) -> int | None:
    """Refuse a ``max_bytes`` above ``JOBQ_FETCH_MAX_BYTES_LIMIT``.

    Checked at submit (the producer's setting) and again by the worker (its own setting).
    """
    cap = get_settings().fetch_max_bytes_limit
    if max_bytes is not None and max_bytes > cap:
        raise ValueError(f"max_bytes {max_bytes} is above JOBQ_FETCH_MAX_BYTES_LIMIT ({cap})")
    return max_bytes


class ResponseTooLarge(Exception):
    """The response body is larger than the job's ``max_bytes``."""


class TooManyRedirects(Exception):
    """More than :data:`MAX_REDIRECTS` redirects."""


@lru_cache(maxsize=256)
def _client(scheme: str, host: str, port: int) -> HTTPClient:
    # One keep-alive pool per host, as large as the worker's concurrency: connecting costs more
    # CPU than the request. The whole request is bounded by the job's timeout in download().
    return HTTPClient(
        host,
        port,
        ssl=scheme == "https",
        concurrency=get_settings().io_concurrency,
        connection_timeout=CONNECT_TIMEOUT,
        network_timeout=300.0,
        headers={"User-Agent": "jobq-fetch_url"},
    )


def _get(url: str, max_bytes: int) -> tuple[int, bytes, str | None]:
    """One GET: (status, body, Location header)."""
    parsed = URL(url)
    response = _client(parsed.scheme, parsed.host, parsed.port).get(parsed.request_uri or "/")
    try:
        declared = response.content_length or 0
        if declared > max_bytes:
            raise ResponseTooLarge(f"{url}: Content-Length {declared} > max_bytes {max_bytes}")
        chunks, size = [], 0
        while chunk := response.read(CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise ResponseTooLarge(f"{url}: body exceeds max_bytes {max_bytes}")
            chunks.append(chunk)
        location = response.get("location")
    finally:
        response.release()
    return response.status_code, b"".join(chunks), location if isinstance(location, str) else None


def download(url: str, *, timeout: float, max_bytes: int) -> tuple[int, bytes, float]:
    """GET ``url``, following up to 5 redirects; return (status, body, elapsed seconds).

    Raises ResponseTooLarge past the cap, TimeoutError after ``timeout`` seconds in all.
    """
    started = time.perf_counter()
    with gevent.Timeout(timeout, TimeoutError(f"{url}: no complete response in {timeout} s")):
        for _ in range(MAX_REDIRECTS + 1):
            status, body, location = _get(url, max_bytes)
            if status not in REDIRECT_STATUSES or not location:
                return status, body, time.perf_counter() - started
            url = urljoin(url, location)
    raise TooManyRedirects(f"more than {MAX_REDIRECTS} redirects, last to {url}")


# No rate by default; `jobq limits set fetch_url 5/s` then limits each host to 5 requests/s.
@io_job(rate_key=by_host("url"))
def fetch_url(
    url: HttpUrl,
    # None: the worker's JOBQ_FETCH_TIMEOUT / JOBQ_FETCH_MAX_BYTES, read where the job runs.
    timeout: Annotated[float, Field(gt=0, le=300)] | None = None,
    max_bytes: Annotated[int | None, Field(gt=0), AfterValidator(within_fetch_cap)] = None,
    keep_body: bool = False,
) -> dict[str, Any]:
    """Fetch a URL; return its status, size, sha256 and elapsed seconds.

    With ``keep_body`` the decoded text is kept in Redis for ``JOBQ_BODY_TTL`` seconds under
    ``body_key``, so the next step of a pipeline can read it without the page travelling
    through the producer.
    """
    settings = get_settings()
    status, body, elapsed = download(
        url,
        timeout=settings.fetch_timeout if timeout is None else timeout,
        max_bytes=settings.fetch_max_bytes if max_bytes is None else max_bytes,
    )
    result: dict[str, Any] = {
        "url": url,
        "status": status,
        "bytes": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
        "elapsed": round(elapsed, 6),
    }
    if keep_body:
        name = current_task.request.id or result["sha256"]
        result["body_key"] = keep_page(name, body.decode("utf-8", errors="replace"))
    return result
