"""Cancelling jobs: ``cancel(ids)``, ``handle.cancel()``, ``jobq cancel``.

A cancel is stored in Redis (:mod:`workers.stores.cancels`), kept as long as results, so it
holds for every worker, including those offline, restarting or not started yet: a queued job is
dropped when a worker would take it, a prefetched one never starts, a running one stops within
one lease-renewal interval. The ids are also broadcast to the workers online (best effort, so
they act at once). See docs/cancel.md.

Example::

    from jobq import cancel, submit

    handle = submit("io_wait", ms=60_000)
    handle.cancel()                 # or cancel([handle.id])
    cancel(queued_ids("io_wait"))   # every io_wait job waiting in its queue now
"""

from __future__ import annotations

import getpass
import json
import logging
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from workers import keys
from workers.app import get_app
from workers.catalog import get_job
from workers.pools import POOLS
from workers.settings import get_settings
from workers.stores.cancels import store_cancels
from workers.stores.client import get_redis

log = logging.getLogger(__name__)

# Items read per LRANGE/ZRANGE while scanning a queue (bounded replies on a long queue).
SCAN_CHUNK = 1000
# Ids per broadcast message, and how many ids are broadcast at most (see _broadcast).
BROADCAST_CHUNK = 1000
BROADCAST_MAX = 10_000


def default_who() -> str:
    """Who is cancelling, as records show it: ``user@host``."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name in a container: still a cancel
        user = "?"
    return f"{user}@{socket.gethostname()}"


def is_job_id(text: str) -> bool:
    """True if ``text`` is a job id (Celery's ids are UUIDs).

    >>> is_job_id("6f1c2a8e-1c3b-4c1e-9a57-0d4d4a8f0b1c"), is_job_id("nope")
    (True, False)
    """
    try:
        # Canonical form only: a cancel is stored under the id as workers see it, so
        # "6F1C…" or "{6f1c…}" would be stored under a key no worker ever reads.
        return str(uuid.UUID(text)) == text
    except (TypeError, ValueError):
        return False


def job_ids_of(jobs: Iterable[Any]) -> list[str]:
    """The ids to cancel: ids as given, and for a handle every step it knows (a pipeline's)."""
    ids: list[str] = []
    for job in jobs:
        if isinstance(job, str):
            ids.append(job)
        else:
            ids.extend(getattr(job, "steps", ()) or (job.id,))
    return list(dict.fromkeys(ids))


def cancel(jobs: Any, *, who: str | None = None, broadcast: bool = True) -> list[str]:
    """Cancel these jobs (an id, a handle, or several); the ids cancelled. Twice is harmless.

    A job that already finished keeps its outcome. Raises ``ValueError`` for a string that is
    not a job id. ``broadcast=False`` skips telling the workers online (for jobs known to be
    waiting in a queue: the take drops them, and held ones are found within one renewal).
    """
    single = isinstance(jobs, str) or hasattr(jobs, "id")
    ids = job_ids_of([jobs] if single else jobs)
    bad = [job_id for job_id in ids if not is_job_id(job_id)]
    if bad:
        raise ValueError(f"not a job id: {bad[0]!r}")
    if not ids:
        return []
    done = finished_states(ids)
    ids = [job_id for job_id in ids if job_id not in done]
    if not ids:
        return []
    who = who or default_who()
    client = get_redis()
    store_cancels(client, ids, who=who, expires=cancel_ttl(client))
    if broadcast:
        _broadcast(ids, who)
    _store_revoked(ids, who)
    return ids


def cancel_ttl(client: Any) -> int:
    """Seconds a cancel is kept: as long as results, and past the latest delayed job's time.

    A job submitted with ``delay=`` for next week and cancelled today must still find its
    cancel when it comes due; the cancel then outlives the due time by the results' lifetime.
    """
    pipe = client.pipeline(transaction=False)
    pipe.time()
    for queue in POOLS:
        pipe.zrange(keys.SCHEDULED_PREFIX + queue, -1, -1, withscores=True)
    (now_s, now_us), *lasts = pipe.execute()
    latest = max((score for last in lasts for _, score in last), default=0.0)
    wait = max(0, int(latest - (now_s + now_us / 1e6)) + 1)
    return get_settings().result_expires + wait


def _store_revoked(ids: list[str], who: str) -> None:
    """Result ``REVOKED`` now, so ``handle.get()`` raises instead of waiting for a dropped job.

    A job that finishes before its worker learns of the cancel overwrites it with its outcome.
    """
    backend = get_app().backend
    for job_id in ids:
        try:
            backend.mark_as_revoked(job_id, f"cancelled by {who}")
        except Exception:  # the cancel itself is stored; the worker stores REVOKED too
            log.debug("could not store REVOKED for %s", job_id, exc_info=True)


def _broadcast(ids: list[str], who: str) -> None:
    """Tell the workers online now (Celery broadcast, no reply awaited); the rest read Redis.

    Only a speed-up for jobs a worker holds: in chunks of :data:`BROADCAST_CHUNK` ids, at most
    :data:`BROADCAST_MAX` (a mass cancel of queued jobs needs none: the take drops them).
    """
    control = get_app().control
    when = time.time()
    for start in range(0, min(len(ids), BROADCAST_MAX), BROADCAST_CHUNK):
        chunk = ids[start : start + BROADCAST_CHUNK]
        try:
            control.broadcast("jobq_cancel", arguments={"ids": chunk, "who": who, "when": when})
        except Exception:  # the stored cancel still holds: workers find it within one interval
            log.debug("could not broadcast the cancel of %d jobs", len(chunk), exc_info=True)
            return


def _envelopes(client: Any, queue: str) -> Iterator[tuple[dict[str, Any], str]]:
    """Every message waiting for ``queue``: in its lists, and parked (rate limits) or delayed."""
    for name in keys.queue_lists(queue):
        for item in _paged(lambda start, end, name=name: client.lrange(name, start, end)):
            yield _decoded(item), "queued"
    # Parked by the rate limiter, and submitted with delay=/at= (docs/delay.md).
    for delayed in (keys.DELAYED_PREFIX + queue, keys.SCHEDULED_PREFIX + queue):
        for item in _paged(lambda start, end, name=delayed: client.zrange(name, start, end)):
            yield _decoded(item), "delayed"


def _paged(read: Callable[[int, int], list[Any]]) -> Iterator[Any]:
    """Every item ``read(start, end)`` gives, :data:`SCAN_CHUNK` at a time (bounded replies)."""
    start = 0
    while True:
        items = read(start, start + SCAN_CHUNK - 1)
        yield from items
        if len(items) < SCAN_CHUNK:
            return
        start += SCAN_CHUNK


def _decoded(item: Any) -> dict[str, Any]:
    try:
        value = json.loads(item)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _headers(envelope: dict[str, Any]) -> dict[str, Any]:
    headers = envelope.get("headers")
    return headers if isinstance(headers, dict) else {}


def queued_ids(name: str) -> list[str]:
    """The ids of every ``name`` job waiting now (its queue's lists, parked or delayed).

    Raises :class:`~workers.registry.UnknownJob` for a name no job has, ``ValueError`` for a
    pipeline (cancel its handle instead: its steps run as jobs of their own).
    """
    spec = get_job(name)
    if spec.kind == "pipeline" or not spec.queue:
        raise ValueError(f"{name} is a pipeline: cancel its handle, or the jobs of its steps")
    client = get_redis()
    found = [
        _headers(envelope).get("id")
        for envelope, _ in _envelopes(client, spec.queue)
        if _headers(envelope).get("task") == name
    ]
    return list(dict.fromkeys(job_id for job_id in found if isinstance(job_id, str)))


def unknown_ids(ids: list[str]) -> list[str]:
    """The ids of jobs jobq has no trace of: no record, no result, not queued, not held.

    For ``jobq cancel``: scans the queues (fine for a command, not for a hot path).
    """
    client = get_redis()
    backend = get_app().backend
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.exists(keys.RECORD_PREFIX + job_id)
        pipe.exists(backend.get_key_for_task(job_id))
    replies = pipe.execute()
    left = {job_id for i, job_id in enumerate(ids) if not (replies[2 * i] or replies[2 * i + 1])}
    if not left:
        return []
    for pool in POOLS.values():
        for envelope, _ in _envelopes(client, pool.queue):
            left.discard(_headers(envelope).get("id"))
            if not left:
                return []
    for _, raw in client.hscan_iter("unacked", count=SCAN_CHUNK):
        value = _decoded_list(raw)
        if value:
            left.discard(_headers(value).get("id"))
    return [job_id for job_id in ids if job_id in left]


def _decoded_list(raw: Any) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return {}
    return value[0] if isinstance(value, list) and value and isinstance(value[0], dict) else {}


def finished_states(ids: list[str]) -> dict[str, str]:
    """The jobs among ``ids`` that already ended, with their recorded state."""
    pipe = get_redis().pipeline(transaction=False)
    for job_id in ids:
        pipe.hget(keys.RECORD_PREFIX + job_id, "state")
    return {
        job_id: state
        for job_id, state in zip(ids, pipe.execute(), strict=True)
        if state in ("SUCCESS", "FAILURE", "REVOKED")
    }
