"""``fetch_url``: an HTTP GET with connect/read timeouts and a size cap (I/O pool).

Under the gevent pool the socket calls yield to other greenlets, so one process keeps hundreds
of requests in flight. Every call has a timeout: gevent's hard time limit fires only where a
job yields, so a socket without one could hold a greenlet forever (shared notes §4).

Example::

    $ jobq submit fetch_url url=http://127.0.0.1:8000/ --wait
"""

from __future__ import annotations

import hashlib
import time
from functools import lru_cache
from typing import Annotated, Any

import urllib3
from celery import current_task
from pydantic import Field

from workers.ratelimit import by_host
from workers.redis_client import get_redis
from workers.registry import io_job
from workers.settings import get_settings

HttpUrl = Annotated[str, Field(pattern=r"^https?://[^\s/$.?#].[^\s]*$", max_length=2048)]
BODY_PREFIX = "jobq:body:"
BODY_TTL_SECONDS = 3600


class ResponseTooLarge(Exception):
    """The response body is larger than the job's ``max_bytes``."""


@lru_cache(maxsize=1)
def _http() -> urllib3.PoolManager:
    # Keep-alive connections are reused across jobs: connecting costs more CPU than the request.
    # block=False: past maxsize, extra connections are opened and then dropped, never waited for.
    return urllib3.PoolManager(
        num_pools=64,
        maxsize=get_settings().io_concurrency,
        block=False,
        # Follow up to 5 redirects, retry nothing else: retries of the job are Celery's business
        # (retries=False would also stop urllib3 from following redirects).
        retries=urllib3.Retry(total=None, connect=0, read=0, redirect=5, status=0, other=0),
    )


def download(url: str, *, timeout: float, max_bytes: int) -> tuple[int, bytes, float]:
    """GET ``url``; return (status, body, elapsed seconds). Raise ResponseTooLarge past the cap."""
    started = time.perf_counter()
    response = _http().request(
        "GET",
        url,
        timeout=urllib3.Timeout(connect=min(5.0, timeout), read=timeout),
        preload_content=False,
        redirect=True,
    )
    try:
        declared = int(response.headers.get("Content-Length") or 0)
        if declared > max_bytes:
            raise ResponseTooLarge(f"{url}: Content-Length {declared} > max_bytes {max_bytes}")
        chunks, size = [], 0
        for chunk in response.stream(64 * 1024):
            size += len(chunk)
            if size > max_bytes:
                raise ResponseTooLarge(f"{url}: body exceeds max_bytes {max_bytes}")
            chunks.append(chunk)
    finally:
        response.release_conn()
    return response.status, b"".join(chunks), time.perf_counter() - started


# No rate by default; `jobq limits set fetch_url 5/s` then limits each host to 5 requests/s.
@io_job(rate_key=by_host("url"))
def fetch_url(
    url: HttpUrl,
    timeout: Annotated[float, Field(gt=0, le=300)] = 10.0,
    max_bytes: Annotated[int, Field(gt=0)] = 5 * 1024 * 1024,
    keep_body: bool = False,
) -> dict[str, Any]:
    """Fetch a URL; return its status, size, sha256 and elapsed seconds.

    With ``keep_body`` the decoded text is kept in Redis for an hour under ``body_key``, so the
    next step of a pipeline can read it without the page travelling through the producer.
    """
    status, body, elapsed = download(url, timeout=timeout, max_bytes=max_bytes)
    result: dict[str, Any] = {
        "url": url,
        "status": status,
        "bytes": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
        "elapsed": round(elapsed, 6),
    }
    if keep_body:
        key = BODY_PREFIX + (current_task.request.id or result["sha256"])
        get_redis().set(key, body.decode("utf-8", errors="replace"), ex=BODY_TTL_SECONDS)
        result["body_key"] = key
    return result
