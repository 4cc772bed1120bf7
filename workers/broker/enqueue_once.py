"""Enqueue a job and record its idempotency key in one Redis step, so a repeat never duplicates.

A submit with an idempotency key (producers/idempotency.py) must be safe to repeat even when
its enqueue was applied and only the reply was lost. So the key is not written before or after
the LPUSH but by the same Lua script (``enqueue_once.lua``): if the key is already recorded,
the job is in and nothing is pushed; otherwise the message is pushed and ``key -> job id`` set,
atomically. A retry of a publish whose reply was lost (kombu's publish retry, jobq's
``ride_out``, or the user submitting again) finds its own id recorded and pushes nothing.

The submit declares the key with :func:`enqueue_once`; every queue write in that context goes
through the script: kombu's ``Channel._put`` (``send_task``, a pipeline's first step, with
``JOBQ_FAST_PATHS`` on or off, via :class:`EnqueueOnceChannel`) and jobq's pipelined publish
(producers/fastpublish.py, via :meth:`OnceRecord.queue_push`).

Example::

    with enqueue_once("jobq:idem:io_wait:order-17", window=86400) as once:
        handle = submit_validated(spec, [checked])[0]
    job_id = once.recorded or handle.id     # the first submit's id, if there was one
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from kombu.transport import redis as redis_transport
from kombu.utils.json import dumps

from workers.broker.schedule import current_schedule
from workers.stores.scripts import LuaScript

ENQUEUE_ONCE = LuaScript(__package__, "enqueue_once.lua")


@dataclass
class OnceRecord:
    """The idempotency key of the submit under way, and what its enqueue found."""

    key: str
    window: int
    suffix: str = ""  # appended to the recorded id (producers/idempotency.py NO_RESULT_MARK)
    # The value recorded by an earlier submit, when the script pushed nothing; else None.
    recorded: str | None = None

    def args(self, message: dict[str, Any], body: str) -> list[Any]:
        return [message["headers"]["id"] + self.suffix, self.window, body]

    def settle(self, reply: Any) -> None:
        """Keep what the script answered: ``[1, ours]`` pushed, ``[0, theirs]`` already in."""
        pushed, value = int(reply[0]), reply[1]
        if not pushed:
            self.recorded = value.decode() if isinstance(value, bytes) else str(value)

    def push(self, client: Any, queue_key: str, message: dict[str, Any], body: str) -> None:
        """Push ``body`` (the JSON of ``message``) to ``queue_key`` unless the key is recorded."""
        self.settle(ENQUEUE_ONCE(client, keys=[self.key, queue_key], args=self.args(message, body)))

    def queue_push(self, pipe: Any, queue_key: str, message: dict[str, Any], body: str) -> None:
        """:meth:`push` as the next command of a pipeline; pass its reply to :meth:`settle`."""
        ENQUEUE_ONCE.queue(pipe, keys=[self.key, queue_key], args=self.args(message, body))


_current: ContextVar[OnceRecord | None] = ContextVar("jobq_enqueue_once", default=None)


def current_once() -> OnceRecord | None:
    """The idempotency record of the submit under way in this context, if any."""
    return _current.get()


@contextmanager
def enqueue_once(key: str, *, window: int, suffix: str = "") -> Iterator[OnceRecord]:
    """Within the block, the (single) job enqueued is pushed only if ``key`` is not recorded."""
    record = OnceRecord(key, window, suffix)
    token = _current.set(record)
    try:
        yield record
    finally:
        _current.reset(token)


class EnqueueOnceChannel(redis_transport.Channel):
    """kombu's Redis channel; in :func:`enqueue_once`, ``_put`` records the key with the push."""

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        # A delayed submit (workers/broker/schedule.py): the same message, stored until due.
        schedule = current_schedule()
        if schedule is not None and kwargs.get("_publish_batch") is None:
            with self.conn_or_acquire() as client:
                schedule.store(client, queue, [message], [dumps(message)], current_once())
            return
        once = current_once()
        if once is None or kwargs.get("_publish_batch") is not None:
            super()._put(queue, message, **kwargs)
            return
        # kombu's prefixing client prefixes only a script's first key (the idempotency key).
        key = self.global_keyprefix + self._q_for_pri(
            queue, self._get_message_priority(message, reverse=False)
        )
        with self.conn_or_acquire() as client:
            once.push(client, key, message, dumps(message))
