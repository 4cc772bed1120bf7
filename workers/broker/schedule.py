"""Delayed submits: the job's message goes into its queue's scheduled set, not its list.

``submit(..., delay=90)`` runs the submit inside :func:`scheduled`; every queue write in that
context stores the message, exactly as it would have been pushed (headers, idempotency and
all), in the sorted set ``jobq:scheduled:<queue>`` scored by its due time, instead of pushing
it on the queue. Both publish paths honour it: kombu's ``Channel._put`` (``send_task``,
pipelines, ``JOBQ_FAST_PATHS=false``, via ``EnqueueOnceChannel``) and jobq's pipelined publish
(producers/fastpublish.py). Every worker's mover (workers/stores/scheduled.py) puts due
messages on their queue in one atomic Lua step.

Why not Celery's ``countdown``/``eta``: on Redis an ETA message is delivered at once and kept in
the worker's memory until its time; it holds a prefetch slot, and past the visibility timeout
it is delivered again and runs twice (https://github.com/celery/kombu/issues/337). Here the
job is in Redis until it is due, so no worker holds it, and a worker killed meanwhile loses nothing.

A relative delay is added to Redis's clock (the script reads ``TIME``), as the mover compares
with Redis's clock too: a producer's clock does not matter. An absolute time is taken as given.

Example::

    with scheduled(Schedule(delay=90.0)):
        handle = submit_validated(spec, [checked])[0]     # stored, due in 90 s
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from workers.keys import SCHEDULED_PREFIX
from workers.stores.scripts import LuaScript

SCHEDULE = LuaScript(__package__, "schedule.lua")


@dataclass(frozen=True)
class Schedule:
    """When delayed jobs are due: ``delay`` seconds from now (Redis clock), or at epoch ``at``."""

    delay: float | None = None
    at: float | None = None

    def due_estimate(self) -> float:
        """The due time by this process's clock (for the message's sent-at header)."""
        return self.at if self.at is not None else time.time() + (self.delay or 0.0)

    def args(self, once: Any, messages: Sequence[dict[str, Any]]) -> list[Any]:
        relative = self.at is None
        value = self.delay if relative else self.at
        recorded = messages[0]["headers"]["id"] + once.suffix if once is not None else ""
        window = once.window if once is not None else 0
        return ["1" if relative else "0", repr(float(value or 0.0)), recorded, window]

    def keys(self, queue: str, once: Any) -> list[str]:
        return [SCHEDULED_PREFIX + queue, *([once.key] if once is not None else [])]

    def store(
        self,
        client: Any,
        queue: str,
        messages: Sequence[dict[str, Any]],
        bodies: Sequence[str],
        once: Any = None,
    ) -> None:
        """Store ``bodies`` (the JSON of ``messages``) in ``queue``'s set, now."""
        reply = SCHEDULE(
            client, keys=self.keys(queue, once), args=[*self.args(once, messages), *bodies]
        )
        if once is not None:
            once.settle(reply)

    def queue_store(
        self,
        pipe: Any,
        queue: str,
        messages: Sequence[dict[str, Any]],
        bodies: Sequence[str],
        once: Any = None,
    ) -> None:
        """:meth:`store` as the next command of ``pipe``; with ``once``, settle its reply."""
        SCHEDULE.queue(
            pipe, keys=self.keys(queue, once), args=[*self.args(once, messages), *bodies]
        )


_current: ContextVar[Schedule | None] = ContextVar("jobq_schedule", default=None)


def current_schedule() -> Schedule | None:
    """The schedule of the delayed submit under way in this context, if any."""
    return _current.get()


@contextmanager
def scheduled(schedule: Schedule | None) -> Iterator[Schedule | None]:
    """Within the block, jobs enqueued are stored until ``schedule`` says (None: enqueued now)."""
    token = _current.set(schedule)
    try:
        yield schedule
    finally:
        _current.reset(token)
