"""Task events batched on gevent workers too: one PUBLISH per batch instead of three per job.

Celery already buffers ``task-*`` events and publishes them as one ``task.multi`` list per
event-loop turn, but only for pools with an event loop (prefork); its own comment says gevent
"should actually buffer". On gevent each job's received/started/succeeded events were three
separate PUBLISH round trips (py-spy on no-op jobs, docs/benchmarks.md). Here they go out in
batches of up to :data:`BUFFER_LIMIT` events, at most :data:`FLUSH_DELAY` seconds late. Flower
and ``celery events`` read list bodies natively (``celery/events/receiver.py``).

It sets attributes of Celery's event dispatcher (``buffer_group``, ``buffer_limit``,
``on_send_buffered``): a fast path, installed only with ``JOBQ_FAST_PATHS`` on.

Example::

    install(app, settings)      # from workers/app.py, when settings.fast_paths
"""

from __future__ import annotations

from typing import Any

from celery import Celery, bootsteps

from workers.pools import is_gevent_pool
from workers.settings import Settings

# Events per batch and the longest an event waits: Flower is at most 50 ms behind.
BUFFER_LIMIT = 64
FLUSH_DELAY = 0.05


class BufferTaskEvents(bootsteps.StartStopStep):
    """Give a gevent worker's event dispatcher the buffering prefork workers already have."""

    requires = ("celery.worker.consumer.events:Events",)

    def start(self, parent: Any) -> None:
        dispatcher = parent.event_dispatcher
        if parent.hub is not None or dispatcher is None or not dispatcher.enabled:
            return  # prefork (event loop): Celery buffers already; or events are off
        if not is_gevent_pool(parent.pool):
            return
        import gevent

        scheduled: list[Any] = []

        def flush() -> None:
            scheduled.clear()
            dispatcher.flush(errors=False, groups=True)

        def on_send_buffered() -> None:
            if not scheduled:
                scheduled.append(gevent.spawn_later(FLUSH_DELAY, flush))

        dispatcher.buffer_group = frozenset({"task"})
        dispatcher.buffer_limit = BUFFER_LIMIT
        dispatcher.on_send_buffered = on_send_buffered

    def shutdown(self, parent: Any) -> None:
        # Warm shutdown: publish what is buffered before the connection closes.
        dispatcher = parent.event_dispatcher
        if dispatcher is not None and dispatcher.buffer_group:
            dispatcher.flush(errors=False, groups=True)


def install(app: Celery, settings: Settings) -> None:
    """Buffer task events on ``app``'s gevent workers."""
    app.steps["consumer"].add(BufferTaskEvents)
