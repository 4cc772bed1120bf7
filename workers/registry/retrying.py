"""Transient errors: ``retry_on=(...)`` on ``@io_job``/``@cpu_job`` retries with backoff and jitter.

Only the exceptions a job declares as transient are retried; any other error fails the job at
once and dead-letters it. Retries use Celery's own ``autoretry_for`` machinery: delay
``retry_backoff * 2**retries`` seconds capped at ``JOBQ_RETRY_BACKOFF_MAX``, with full jitter
(a random delay between 0 and that value, so a thousand jobs failing together do not retry
together), at most ``max_retries`` times (``JOBQ_TRANSIENT_MAX_RETRIES`` by default). After the
last retry the error is final and the job is dead-lettered with ``reason=retries_exhausted``.

Example::

    @io_job(retry_on=(ConnectionError, TimeoutError), max_retries=4, retry_backoff=2)
    def ping(url: str) -> int: ...
"""

from __future__ import annotations

from typing import Any

from workers.settings import get_settings


def retry_options(options: dict[str, Any]) -> dict[str, Any]:
    """Translate ``retry_on`` into Celery task options; other options pass through unchanged."""
    options = dict(options)
    retry_on = options.pop("retry_on", None)
    settings = get_settings()
    if not retry_on:
        # max_retries also bounds task_retry_on_worker_lost: a job whose process dies is re-sent
        # at most this many times. (Celery has no app-wide setting for it; the default is 3.)
        options.setdefault("max_retries", settings.max_retries_on_worker_lost)
        return options
    if isinstance(retry_on, type):
        retry_on = (retry_on,)
    options.setdefault("max_retries", settings.transient_max_retries)
    options.setdefault("retry_backoff", 1)
    options.setdefault("retry_backoff_max", settings.retry_backoff_max)
    options.setdefault("retry_jitter", True)
    return {**options, "autoretry_for": tuple(retry_on)}
