"""Cancellation on the worker: a cancelled job never starts, a running one stops.

A cancel is a key in Redis (:mod:`workers.stores.cancels`). A worker learns of it three ways,
none of them a Redis round trip of its own per job:

* **queued jobs**: the take script drops a cancelled message instead of taking it
  (``workers/broker/fetch_and_record.lua``), and records it as ``REVOKED``;
* **held jobs** (prefetched, or running): the :class:`~workers.features.leases.LeaseKeeper`
  renews the lease of every job its worker holds every ``JOBQ_LEASE_RENEW_INTERVAL`` seconds; the
  same pipelined round trip reads those jobs' cancel keys (one ``MGET``) and hands the cancelled
  ones to :func:`learned`. A worker that missed everything else acts within one interval;
* **at once**: ``jobq cancel`` also broadcasts the ids (the ``jobq_cancel`` control command,
  Celery's broadcast, best effort: a worker that misses it learns at its next renewal).

The keeper is an OS thread; it only queues what it learned. A timer of the consumer (the gevent
hub, or the prefork event loop: the thread that owns the requests and the pool) applies it
(:func:`apply_pending`):

* the id joins Celery's in-memory ``revoked`` set: a request not yet handed to the pool is
  skipped by Celery (acknowledged, result ``REVOKED``, ``task_revoked``), and on gevent
  ``JobTask`` refuses it right before the body (:func:`refuse_cancelled`);
* a running gevent job: Celery's ``Request.terminate`` kills its greenlet (``GreenletExit`` is
  raised in it: ``finally`` blocks run);
* a prefork job, running or waiting for a child: ``Request.terminate(pool, SIGKILL)``; billiard
  replaces the child, and a job not yet written to a child is never written.

Celery then acknowledges the delivery (no lease brings it back), stores the result ``REVOKED``,
and sends ``task_revoked``; :func:`record_revoked` writes the job record (``REVOKED``, who
cancelled it, when) that ``jobq show`` prints. Nothing is dead-lettered, retried or counted as
failed.

Example::

    $ jobq cancel 6f1c…            # a running 60 s job stops within one renewal interval
"""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict, deque
from typing import Any

from celery import Celery, bootsteps
from celery.exceptions import Ignore
from celery.signals import task_revoked
from celery.worker import state as worker_state
from celery.worker.control import control_command

from workers import keys
from workers.pools import is_gevent_pool
from workers.settings import Settings, get_settings
from workers.stores.cancels import CANCELLED_STATE, normalized_cancel, read_cancel
from workers.stores.client import get_redis

log = logging.getLogger(__name__)

# How often the consumer applies what the lease keeper learned (seconds): a timer, no Redis.
APPLY_EVERY_S = 0.25
# The who/when of the cancels this worker has seen, for the records it writes.
_seen: OrderedDict[str, dict[str, Any]] = OrderedDict()
_SEEN_MAX = 10_000
# A broadcast carries at most this many ids (jobq cancel sends chunks of 1 000), each id at
# most this long: a crafted control message cannot make a worker loop or remember without end.
BROADCAST_IDS_MAX = 1_000
MAX_ID_LENGTH = 64
# Filled by the lease keeper's OS thread, emptied by the consumer: a deque's append and popleft
# are thread-safe and, unlike the queue module, never patched by gevent.
_pending: deque[tuple[str, dict[str, Any]]] = deque()


class JobCancelled(Ignore):
    """Raised before a job's body when it was cancelled meanwhile: it does not run.

    An :class:`~celery.exceptions.Ignore`, so Celery neither stores a failure nor retries it;
    :class:`~workers.registry.request.JobRequest` announces it as revoked.
    """


def held_job_ids(qos: Any, tags: list[str]) -> list[str]:
    """The job ids of the deliveries ``tags`` that ``qos`` holds (read from another thread)."""
    delivered = qos._delivered
    ids = []
    for tag in tags:
        message = delivered.get(tag)
        headers = getattr(message, "headers", None) or {}
        job_id = headers.get("id")
        if isinstance(job_id, str):
            ids.append(job_id)
    return ids


def learned(found: dict[str, dict[str, Any]]) -> None:
    """Queue cancels the lease keeper found among held jobs (any thread): applied on a timer."""
    for job_id, cancel in found.items():
        _pending.append((job_id, cancel))


def _remember(job_id: str, cancel: dict[str, Any]) -> None:
    _seen[job_id] = cancel
    _seen.move_to_end(job_id)
    while len(_seen) > _SEEN_MAX:
        _seen.popitem(last=False)


def held_requests() -> dict[str, list[Any]]:
    """The requests this worker holds, by job id (built once per batch of cancels)."""
    held: dict[str, list[Any]] = {}
    for request in list(worker_state.reserved_requests):
        held.setdefault(request.id, []).append(request)
    return held


def cancel_held(
    consumer: Any, job_id: str, cancel: dict[str, Any], held: dict[str, list[Any]] | None = None
) -> int:
    """Stop ``job_id`` on this worker (the consumer's thread); how many requests were stopped."""
    already = job_id in worker_state.revoked
    # Learned again (each renewal while the job is held): keep what the first time noted.
    cancel = _seen[job_id] if already and job_id in _seen else dict(cancel)
    _remember(job_id, cancel)
    worker_state.revoked.add(job_id)
    stopped = 0
    gevent = is_gevent_pool(consumer.pool)
    requests = (held_requests() if held is None else held).get(job_id, ())
    if requests and not already:
        # Once per job this worker holds: ids of jobs held elsewhere (most of a broadcast) or
        # learned again at each renewal are not logged.
        log.warning("job %s cancelled by %s", job_id, cancel.get("who"))
    for request in requests:
        if request._already_revoked or getattr(request, "_terminate_on_ack", None):
            continue  # stopped already, or to be stopped when its child accepts it
        if gevent:
            if not request.time_start or already:
                # Not started, or started after this worker first learned the cancel: either
                # way JobTask refuses it before its body (refuse_cancelled). A job running
                # when the cancel was first learned was stopped then.
                continue
            cancel["started_at"] = request.time_start
            request.terminate(consumer.pool)  # GreenletExit in the job's greenlet
        else:
            if request.time_start:
                cancel["started_at"] = request.time_start
            request.terminate(consumer.pool, "SIGKILL")  # the child is replaced
        stopped += 1
    return stopped


def apply_pending(consumer: Any) -> None:
    """Apply every cancel the lease keeper queued (a consumer timer: the right thread)."""
    held: dict[str, list[Any]] | None = None
    while True:
        try:
            job_id, cancel = _pending.popleft()
        except IndexError:
            return
        held = held_requests() if held is None else held
        try:
            cancel_held(consumer, job_id, cancel, held)
        except Exception:
            log.warning("could not cancel job %s", job_id, exc_info=True)


def refuse_cancelled(task: Any) -> None:
    """In ``JobTask``, before the body: raise :class:`JobCancelled` if the job was cancelled.

    An in-memory look-up (Celery's ``revoked`` set), no Redis: on gevent the job runs in the
    process that learned the cancel; a prefork child knows the ids cancelled before it forked,
    and its parent never hands it a job it knew to be cancelled.
    """
    job_id = task.request.id
    if job_id and job_id in worker_state.revoked:
        raise JobCancelled(f"job {job_id} was cancelled before it started")


def record_revoked(request: Any = None, terminated: bool = False, **_: Any) -> None:
    """``task_revoked`` handler: the job record says REVOKED, who cancelled it, and when."""
    job_id = getattr(request, "id", None)
    if not job_id:
        return
    client = get_redis()
    cancel = _seen.get(job_id) or read_cancel(client, job_id) or {"who": "celery revoke"}
    delivery = getattr(request, "delivery_info", None) or {}
    started = cancel.get("started_at")
    record = {
        "name": getattr(request, "task", None) or "",
        "queue": delivery.get("routing_key") or "",
        "state": CANCELLED_STATE,
        "worker": getattr(request, "hostname", "") or "",
        "pid": os.getpid(),
        "sent_at": getattr(request, keys.SENT_HEADER, None) or "",
        "finished_at": time.time(),
        "cancelled_by": str(cancel.get("who") or "?"),
        "cancelled_at": cancel.get("when") or "",
        "terminated": int(bool(terminated)),
    }
    if started:
        record["started_at"] = started
    key = keys.RECORD_PREFIX + job_id
    try:
        pipe = client.pipeline(transaction=False)
        pipe.hset(key, mapping=record)
        pipe.expire(key, get_settings().result_expires)
        pipe.execute()
    except Exception:
        log.warning("could not record the cancel of %s", job_id, exc_info=True)


def is_cancelled_here(job_id: str) -> bool:
    """True if this process knows ``job_id`` was cancelled (its record is the cancel's)."""
    return job_id in worker_state.revoked


class CancelApplier(bootsteps.StartStopStep):
    """Consumer bootstep: applies queued cancels every :data:`APPLY_EVERY_S` seconds."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.timer: Any = None

    def start(self, parent: Any) -> None:
        self.timer = parent.timer.call_repeatedly(
            APPLY_EVERY_S, apply_pending, (parent,), priority=10
        )

    def stop(self, parent: Any) -> None:
        if self.timer is not None:
            getattr(self.timer, "entry", self.timer).cancel()  # see leases.LeaseRenewal.stop
            self.timer = None

    shutdown = stop


@control_command(
    args=[("ids", list), ("who", str), ("when", float)],
    signature="<id> [id …]",
)
def jobq_cancel(
    state: Any, ids: list[str], who: str = "?", when: float | None = None, **_: Any
) -> dict[str, Any]:
    """Control command broadcast by ``jobq cancel``: stop these jobs now if held here.

    Anyone who can write to Redis can send it, so its arguments are checked, not trusted.
    """
    if not isinstance(ids, list):
        return {"error": "ids must be a list of job ids"}
    cancel = normalized_cancel({"who": who, "when": when})
    held = held_requests()
    stopped = 0
    for job_id in ids[:BROADCAST_IDS_MAX]:
        if isinstance(job_id, str) and len(job_id) <= MAX_ID_LENGTH:
            stopped += cancel_held(state.consumer, job_id, cancel, held)
    return {"ok": f"{stopped} stopped"}


def install(app: Celery, settings: Settings) -> None:
    """Apply cancels in every worker of ``app`` and record cancelled jobs."""
    app.steps["consumer"].add(CancelApplier)
    task_revoked.connect(record_revoked, weak=False, dispatch_uid="jobq.cancellation.record")
