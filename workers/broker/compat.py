"""The private Celery/kombu internals jobq builds on, checked when a worker starts.

jobq is pinned to the Celery/kombu versions it was tested with because a few of its parts use
internals that a release may change without notice. Two kinds:

* **Guarantees** (always on): the lease renewal reads the QoS's delivered and dirty sets and the
  ``unacked_index`` key; the guard against non-envelope queue items and the atomic take
  (workers/broker/take.py) override ``Channel._brpop_start``/``_brpop_read``.
* **Fast paths** (``JOBQ_FAST_PATHS``, on by default): batched fetch and acks, the one-round-trip
  result write, buffered task events on gevent.

A worker whose libraries lack one of them refuses to start, with one line on stderr saying which
and exit status 2, instead of losing jobs later. The check is by name: it catches an internal that
was removed or renamed, not one whose behaviour changed, which is why the pins stay. For a fast
path the way out is ``JOBQ_FAST_PATHS=false`` (stock code paths, slower, every guarantee kept);
for a guarantee, the pins.

Example::

    >>> missing_internals(fast_paths=True)
    []
"""

from __future__ import annotations

import dis
import sys
from typing import Any

from celery import Celery, bootsteps
from celery.backends.redis import RedisBackend
from celery.events.dispatcher import EventDispatcher
from kombu.transport import redis as redis_transport
from kombu.transport import virtual

from workers.settings import Settings

# (owner, attribute, what uses it). Instance attributes are checked on the class's __init__
# source, so nothing has to connect to Redis.
GUARANTEES: tuple[tuple[Any, str, str], ...] = (
    # workers/broker/envelopes.py overrides _brpop_read with kombu 5.7.0's body, which uses
    # the next three too.
    (redis_transport.Channel, "_brpop_read", "the guard against non-envelope queue items"),
    (redis_transport.Channel, "_queue_cycle", "the guard against non-envelope queue items"),
    (redis_transport.Channel, "_flush_brpop_reauth", "the guard against non-envelope queue items"),
    (redis_transport.Channel, "_in_poll", "the guard against non-envelope queue items"),
    # workers/broker/take.py: the wait that takes nothing, then the take script.
    (redis_transport.Channel, "_brpop_start", "taking and recording messages in one step"),
    (redis_transport.Channel, "_brpop_sent_at", "taking and recording messages in one step"),
    (redis_transport.Channel, "_q_for_pri", "taking and recording messages in one step"),
    (redis_transport.Channel, "_queue_bind", "waiting out a full Redis at start-up"),
    (redis_transport.Channel, "_size", "waiting out a full Redis at start-up"),
    (redis_transport.Channel, "_put", "idempotency keys recorded with the enqueue"),
    (
        redis_transport.Channel,
        "_get_message_priority",
        "idempotency keys recorded with the enqueue",
    ),
    (redis_transport.Channel, "unacked_index_key", "lease renewal"),
    (redis_transport.Channel, "unacked_restore_limit", "restoring expired leases"),
    (redis_transport.QoS, "restore_visible", "restoring expired leases"),
    # workers/broker/lease_clock.py mirrors kombu 5.7.0's restore_visible, on the Redis clock.
    (redis_transport.QoS, "_vrestore_count", "restoring expired leases"),
    (redis_transport.QoS, "restore_by_tag", "restoring expired leases"),
    (redis_transport, "Mutex", "restoring expired leases"),
    (redis_transport, "MutexHeld", "restoring expired leases"),
    (redis_transport.Channel, "_connparams", "lease renewal (its own connection)"),
    (virtual.QoS, "_delivered", "lease renewal (the deliveries a worker holds)"),
    (virtual.QoS, "_dirty", "lease renewal (acks not yet sent)"),
    (redis_transport.Channel, "Client", "lease renewal (its own connection)"),
    (virtual.Transport, "_deliver", "taking and recording messages in one step"),
    (redis_transport.QoS, "unacked_key", "taking and recording messages in one step"),
    (redis_transport.QoS, "unacked_mutex_key", "restoring expired leases"),
    (redis_transport.QoS, "unacked_mutex_expire", "restoring expired leases"),
    (redis_transport.QoS, "visibility_timeout", "restoring expired leases"),
)
FAST_PATHS: tuple[tuple[Any, str, str], ...] = (
    (redis_transport.QoS, "_remove_from_indices", "batched acks"),
    (virtual.QoS, "can_consume_max_estimate", "batched fetch"),
    (redis_transport.MultiChannelPoller, "on_poll_start", "waking a full prefetch window"),
    (redis_transport.MultiChannelPoller, "poller", "waking a full prefetch window"),
    (redis_transport.MultiChannelPoller, "handle_event", "waking a full prefetch window"),
    (redis_transport.Channel, "_create_client", "batched fetch (its own client)"),
    (RedisBackend, "_get_result_meta", "one-round-trip result writes"),
    (EventDispatcher, "buffer_group", "buffered task events on gevent"),
)


def _has(owner: Any, attribute: str) -> bool:
    if hasattr(owner, attribute):
        return True
    # Attributes an __init__ assigns (kombu's QoS sets _delivered and _dirty there): a store,
    # not a mere mention (kombu's Channel.__init__ reads self._brpop_read into its handlers).
    init = owner.__dict__.get("__init__")
    if init is not None and hasattr(init, "__code__"):
        stores = {
            i.argval for i in dis.get_instructions(init) if i.opname in ("STORE_ATTR", "STORE_NAME")
        }
        if attribute in stores:
            return True
    return any(_has(base, attribute) for base in owner.__bases__ if base is not object)


def missing_internals(*, fast_paths: bool) -> list[str]:
    """One line per internal these Celery/kombu versions lack (empty: all present)."""
    checks = GUARANTEES + (FAST_PATHS if fast_paths else ())
    return [
        f"{owner.__module__}.{owner.__qualname__}.{attribute} (used by {purpose})"
        for owner, attribute, purpose in checks
        if not _has(owner, attribute)
    ]


EXIT_INCOMPATIBLE = 2


def incompatibility(*, fast_paths: bool) -> str | None:
    """The one-line refusal for these libraries, or None when they have what jobq uses."""
    missing = missing_internals(fast_paths=fast_paths)
    if not missing:
        return None
    hint = (
        "set JOBQ_FAST_PATHS=false to run without the speed-ups that need them"
        if fast_paths and not missing_internals(fast_paths=False)
        else "install the Celery/kombu versions pinned in jobq's pyproject.toml"
    )
    return f"error: these Celery/kombu versions lack {'; '.join(missing)}: {hint}"


class CheckInternals(bootsteps.Step):
    """Worker bootstep: refuse to start on Celery/kombu versions that lack what jobq uses."""

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        refusal = incompatibility(fast_paths=parent.app.conf.jobq_fast_paths)
        if refusal:
            # One line and an exit status, not a traceback from inside Celery's start-up.
            print(refusal, file=sys.stderr)
            raise SystemExit(EXIT_INCOMPATIBLE)


def install(app: Celery, settings: Settings) -> None:
    """Check the internals when each of ``app``'s workers is built."""
    app.steps["worker"].add(CheckInternals)
