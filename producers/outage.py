"""Riding out a short Redis outage on the producer side: retry with backoff, for a bounded time.

A Redis restart makes Redis unreachable for a few seconds. A producer that gives
up at the first refused connection turns that blip into failed submissions for every service
that enqueues jobs; one that retries forever hangs its caller. jobq's producers retry for
``JOBQ_PRODUCER_RETRY_FOR`` seconds (10 by default, 0 = fail at once), with growing pauses, and
then raise the last error: the CLI prints ``cannot reach Redis at …`` and exits 1.

What is retried is one step that Redis applies whole or not at all (the admission check, one
``LPUSH`` of up to 1 000 jobs, one ping), so a retry never sends part of a batch twice. If the
connection breaks after Redis applied a step but before its reply arrived, the retry sends it
again: delivery is at least once, here as everywhere (use idempotency keys where it matters).
Jobs published through ``apply_async`` (pipelines, jobs with a correlation id) are retried by
Celery's ``task_publish_retry_policy`` (``workers.app.publish_retry_policy``), sized to the same
window; opening a new broker connection is bounded by Celery's ``broker_connection_timeout``.

Only "could not reach Redis" is retried. A wrong password, a missing ACL permission or a server
certificate that does not verify fails at once: waiting would not fix it. Neither is an
answer from Redis such as ``READONLY`` (a demoted primary) or a full Redis.

Example::

    ids = ride_out(lambda: pipe.execute())        # retried while Redis is unreachable
"""

from __future__ import annotations

import logging
import random
import ssl
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import redis
from kombu.exceptions import OperationalError

from workers.settings import get_settings

T = TypeVar("T")
log = logging.getLogger(__name__)

# Unreachable or timed out; never an error Redis answered with (bad command, OOM, wrong type):
# those would fail the same way again.
UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, OperationalError, ConnectionError)
# redis-py raises these as ConnectionErrors too (kombu wraps them in OperationalError), but they
# are refusals, not outages.
_REFUSED = (
    redis.exceptions.AuthenticationError,
    redis.exceptions.AuthorizationError,
    ssl.SSLCertVerificationError,
)
_REFUSED_WORDS = ("WRONGPASS", "NOAUTH", "NOPERM", "invalid username-password", "certificate")
# Pauses between attempts: from FIRST_PAUSE doubling to MAX_PAUSE, each jittered by ±25% so
# a thousand producers do not reconnect in lockstep when Redis comes back.
FIRST_PAUSE = 0.1
MAX_PAUSE = 1.0

Notify = Callable[[BaseException, float], None]  # (the error, seconds left in the window)


def ride_out(
    call: Callable[[], T], *, retry_for: float | None = None, on_retry: Notify | None = None
) -> T:
    """Return ``call()``, retrying while Redis is unreachable for up to ``retry_for`` seconds.

    ``retry_for`` defaults to ``JOBQ_PRODUCER_RETRY_FOR``. ``on_retry(error, seconds_left)`` is
    called before each pause (the CLI says once that it is retrying). After the window the last
    error is raised; an attempt already started when the window closes is not cut short.
    """
    window = get_settings().producer_retry_for if retry_for is None else retry_for
    deadline = time.monotonic() + window
    pause = FIRST_PAUSE
    while True:
        try:
            return call()
        except UNREACHABLE as exc:
            left = deadline - time.monotonic()
            if left <= 0 or not is_unreachable(exc):
                raise
            if on_retry is not None:
                on_retry(exc, left)
            else:
                # One warning per outage, not one per attempt.
                level = logging.WARNING if pause == FIRST_PAUSE else logging.DEBUG
                log.log(level, "Redis unreachable (%s); retrying for up to %.0f s", exc, left)
            time.sleep(min(left, pause * random.uniform(0.75, 1.25)))
            pause = min(pause * 2, MAX_PAUSE)


def is_unreachable(exc: BaseException) -> bool:
    """True when ``exc`` means Redis could not be reached, not that it refused us.

    >>> is_unreachable(redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379."))
    True
    >>> is_unreachable(redis.exceptions.AuthenticationError("invalid username-password pair"))
    False
    """
    if not isinstance(exc, UNREACHABLE):
        return False
    for seen in causes(exc):
        if isinstance(seen, _REFUSED) or any(word in str(seen) for word in _REFUSED_WORDS):
            return False
        # Redis answered (OOM, READONLY …): it was reached, and a retry would be refused again.
        if isinstance(seen, redis.exceptions.ResponseError):
            return False
    return True


def causes(exc: BaseException, limit: int = 8) -> Iterator[BaseException]:
    """``exc`` and the exceptions it wraps (kombu and redis-py wrap the original), bounded."""
    seen: BaseException | None = exc
    for _ in range(limit):
        if seen is None:
            return
        yield seen
        seen = seen.__cause__ or seen.__context__
