"""One Redis client per process for jobq's own keys (job records, pipeline bodies, probes).

It uses a ``BlockingConnectionPool``: hundreds of greenlets sharing one client would otherwise
hit redis-py's pool cap and fail with "Too many connections" (shared notes §4). redis-py resets
its pools after a fork, so prefork children get their own connections.

Example::

    >>> get_redis().ping()
    True
"""

from __future__ import annotations

from functools import cache, lru_cache

import redis
import redis.utils

from workers.settings import get_settings

# redis-py reads its own version from the package metadata for every new connection object
# (0.7 ms: a scan of sys.path); a gevent worker ramping up to its concurrency opens hundreds.
# The version cannot change while the process runs.
redis.utils.get_lib_version = cache(redis.utils.get_lib_version)


@lru_cache(maxsize=1)
def get_redis() -> redis.Redis:
    """The process-wide client for ``REDIS_URL``."""
    pool = redis.BlockingConnectionPool.from_url(
        get_settings().redis_url,
        max_connections=50,
        timeout=30,  # seconds to wait for a free connection before raising
        socket_timeout=30,
        socket_connect_timeout=5,
        socket_keepalive=True,
        decode_responses=True,
    )
    return redis.Redis(connection_pool=pool)
