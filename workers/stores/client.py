"""Every Redis client jobq opens for its own keys, built in one place with the same options.

:func:`get_redis` is the process-wide client (job records, dead letters, the gate, limits,
pause flags …). It uses a ``BlockingConnectionPool``: hundreds of greenlets sharing one client
would otherwise hit redis-py's connection cap and fail with "Too many connections"; blocking
makes them wait for a free connection instead. redis-py resets its pools after a fork, so
prefork children get their own connections. :func:`tls_options` gives kombu and Celery's
result backend the same TLS options, so every connection jobq opens checks the server alike.

Example::

    >>> get_redis().ping()
    True
"""

from __future__ import annotations

import ssl
from functools import lru_cache
from typing import Any

import redis

from workers.settings import get_settings


def tls_options(url: str) -> dict[str, Any] | None:
    """The TLS options for a client of ``url``: None for ``redis://``, verified TLS for ``rediss://``.

    The same keys serve redis-py, kombu (``broker_use_ssl``) and Celery's result backend
    (``redis_backend_use_ssl``), so every connection jobq opens checks the server alike.

    >>> tls_options("redis://127.0.0.1:6379/0") is None
    True
    >>> tls_options("rediss://redis.example:6380/0")["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    True
    """
    if not url.startswith("rediss://"):
        return None
    settings = get_settings()
    # Never CERT_NONE: an unverified TLS connection hands the Redis password to anyone in the
    # path. kombu alone would not verify at all.
    options: dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    if settings.redis_ca_file:
        options["ssl_ca_certs"] = settings.redis_ca_file
    if settings.redis_cert_file:
        options["ssl_certfile"] = settings.redis_cert_file
        options["ssl_keyfile"] = settings.redis_key_file
    return options


def client_for(url: str, **options: Any) -> redis.Redis:
    """A plain client for ``url`` (one connection at a time), with jobq's TLS options."""
    return redis.Redis.from_url(url, **(tls_options(url) or {}), **options)


@lru_cache(maxsize=1)
def get_redis() -> redis.Redis:
    """The process-wide client for ``REDIS_URL``."""
    url = get_settings().redis_url
    pool = redis.BlockingConnectionPool.from_url(
        url,
        **(tls_options(url) or {}),
        max_connections=50,
        timeout=30,  # seconds to wait for a free connection before raising
        socket_timeout=30,
        socket_connect_timeout=5,
        socket_keepalive=True,
        decode_responses=True,
    )
    return redis.Redis(connection_pool=pool)
