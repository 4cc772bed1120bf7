"""The admission gate: producers wait (or fail fast) when a queue's backlog is full.

A Redis list is unbounded (kombu ignores ``x-max-length`` on Redis), so nothing stops a producer
from filling Redis until it runs out of memory. Each queue therefore has a high-water and a
low-water mark (``JOBQ_IO_HIGH_WATER`` …). Before a batch is published the gate asks Redis, in
one Lua script, how many of its jobs fit:

* the backlog is the sum of the queue's priority lists (``io``, ``io\\x06\\x163`` …), the jobs
  parked by the rate limiter for that queue, and the room other producers have reserved but
  not yet published, so N producers together never overshoot the mark;
* a batch that does not fit entirely gets the room that is left and *closes* the gate: from then
  on, every producer waits until the backlog has drained to the low-water mark (hysteresis, so
  producers do not wake up for every single job a worker takes);
* the room granted is a reservation (with a lease, in case the producer dies); the producer
  releases it right after publishing, when the jobs are counted in the lists themselves. Between
  the two a batch counts twice, so racing producers may stop up to one batch each *below* the
  mark; batches never take it above.

The check is one ``EVALSHA`` per batch plus one release, not per job (docs/backpressure.md has
the measured cost). A single ``submit`` pays one ``EVALSHA`` and reserves nothing, so racing
producers can pass the mark by one job each.
``on_full="wait"`` polls with backoff up to ``timeout`` seconds;
``on_full="fail"`` raises :class:`QueueFull` at once. Either way :class:`QueueFull` carries the
handles of what was submitted and the number that was not, so nothing is reported as
submitted that was not.

Example::

    gate = AdmissionGate.for_queue("io")
    handles = gated_publish(gate, items, publish=lambda chunk: submit_validated(spec, chunk),
                            on_full="fail")
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import redis
from kombu.exceptions import OperationalError

from producers.outage import UNREACHABLE, causes, ride_out
from workers.settings import get_settings
from workers.stores.admission import ADMITTED, reservation_token
from workers.stores.admission import Admission as Admission  # re-exported: the check's parts
from workers.stores.admission import AdmissionGate as _Gate
from workers.stores.admission import WaterMarks as WaterMarks
from workers.stores.admission import marks_for as marks_for

OnFull = Literal["wait", "fail"]
log = logging.getLogger(__name__)
T = TypeVar("T")

# Polling while the gate is closed: start fast (workers may drain quickly), back off to this.
MAX_POLL_INTERVAL = 0.5


class QueueFull(Exception):
    """The queue's backlog is at its high-water mark (or Redis is full): jobs were not submitted.

    ``submitted`` holds the handles of the jobs that did go in before the gate closed, and
    ``not_submitted`` how many of the caller's jobs did not (the last ones, in order); ``reason``
    is the message without that count.
    """

    def __init__(
        self,
        reason: str,
        *,
        queue: str,
        backlog: int | None = None,
        submitted: Sequence[Any] = (),
        not_submitted: int = 0,
    ) -> None:
        super().__init__(f"{reason}: {not_submitted} job(s) not submitted")
        self.reason = reason
        self.queue = queue
        self.backlog = backlog
        self.submitted = list(submitted)
        self.not_submitted = not_submitted


class RedisFull(QueueFull):
    """Redis refused a write: ``maxmemory`` is reached and the policy is ``noeviction``.

    The batch that failed is counted as not submitted, though part of it may be in Redis: jobs
    are never reported as submitted when they may not be.
    """


@dataclass(frozen=True)
class GateWait:
    """What a waiting producer reports (the CLI shows it in its progress bar)."""

    queue: str
    backlog: int
    marks: WaterMarks
    waited: float

    def describe(self) -> str:
        return (
            f"waiting: {self.queue} backlog {self.backlog:,} over high-water "
            f"{self.marks.high:,}; resumes below {self.marks.low:,} ({self.waited:.0f}s)"
        )


class AdmissionGate(_Gate):
    """The admission gate of one queue, as producers use it (see the module docstring)."""

    def release(self, admission: Admission, *, retry_for: float | None = None) -> None:
        """The reserved jobs are published (or given up): stop counting the reservation.

        Retried while Redis is unreachable for ``retry_for`` seconds (``JOBQ_PRODUCER_RETRY_FOR``
        by default); never raises for an unreachable Redis, since the lease frees it anyway.
        """
        if not admission.token:
            return

        try:
            ride_out(functools.partial(super().release, admission), retry_for=retry_for)
        except UNREACHABLE:
            # The jobs are published (or given up) either way; an unreleased reservation only
            # holds its room until its lease ends, so this must not fail the submit.
            log.warning(
                "could not release %d reserved job(s) of queue %r; their lease frees them in %d s",
                admission.granted,
                self.queue,
                self.lease_ms() // 1000,
            )


def gated_publish(
    gate: AdmissionGate,
    items: Sequence[T],
    publish: Callable[[list[T]], list[Any]],
    *,
    on_full: OnFull = "wait",
    timeout: float | None = None,
    on_wait: Callable[[GateWait], None] | None = None,
    batch_size: int = 1000,
) -> list[Any]:
    """Publish ``items`` in batches through ``gate``; return what ``publish`` returned, in order.

    ``publish(chunk)`` must enqueue every job of ``chunk`` and return one handle per job. Over
    the mark: ``on_full="fail"`` raises :class:`QueueFull` at once; ``"wait"`` waits until the
    backlog drains to the low-water mark, up to ``timeout`` seconds (default
    ``JOBQ_GATE_TIMEOUT``), then raises :class:`QueueFull`.
    """
    if on_full not in ("wait", "fail"):
        raise ValueError(f"on_full must be 'wait' or 'fail', not {on_full!r}")
    timeout = get_settings().gate_timeout if timeout is None else timeout
    handles: list[Any] = []
    position = 0
    started: float | None = None
    poll = 0.02
    while position < len(items):
        wanted = min(batch_size, len(items) - position)
        # Redis full at the check itself: report the batches already sent, not zero.
        with redis_full_errors(gate.queue, handles, len(items) - position):
            # Retried while Redis is unreachable (producers/outage.py): one atomic script, under
            # one token, so a retry whose first reply was lost does not reserve twice.
            token = reservation_token(wanted)
            admission = ride_out(functools.partial(gate.try_admit, wanted, token))
        if admission.granted:
            published = False
            try:
                with redis_full_errors(gate.queue, handles, len(items) - position), admitted():
                    handles += publish(list(items[position : position + admission.granted]))
                published = True
            except QueueFull as inner:
                # A gate inside ``publish`` (a pipeline's later queue) closed: count our batches.
                raise type(inner)(
                    inner.reason,
                    queue=inner.queue,
                    backlog=inner.backlog,
                    submitted=handles + inner.submitted,
                    not_submitted=len(items) - position - len(inner.submitted),
                ) from inner
            finally:
                # After a publish that already waited out the retry window, one try: the
                # reservation's lease frees the room anyway.
                gate.release(admission, retry_for=None if published else 0)
            position += admission.granted
            started, poll = None, 0.02
            continue
        waited = 0.0 if started is None else time.monotonic() - started
        if on_full == "fail" or waited >= timeout:
            why = "is full" if on_full == "fail" else f"did not drain in {timeout:g}s"
            raise QueueFull(
                f"queue {gate.queue!r} {why} (backlog {admission.backlog:,}, high-water "
                f"{gate.marks.high:,}, low-water {gate.marks.low:,})",
                queue=gate.queue,
                backlog=admission.backlog,
                submitted=handles,
                not_submitted=len(items) - position,
            )
        if started is None:
            started = time.monotonic()
        if on_wait is not None:
            on_wait(GateWait(gate.queue, admission.backlog, gate.marks, waited))
        # Never sleep past the deadline; back off so a long wait costs Redis little.
        time.sleep(max(0.0, min(poll, timeout - waited)))
        poll = min(poll * 2, MAX_POLL_INTERVAL)
    return handles


@contextmanager
def admitted() -> Iterator[None]:
    """Mark publishes in this block as admitted already, so the workers' gate lets them pass.

    A job that submits jobs (``submit`` inside a job) publishes through ``gated_publish``; the
    worker's own gate (workers/features/publish_gate.py) must not count them a second time.
    """
    token = ADMITTED.set(True)
    try:
        yield
    finally:
        ADMITTED.reset(token)


def is_redis_full(exc: BaseException) -> bool:
    """True for Redis's "OOM command not allowed when used memory > 'maxmemory'" refusal.

    Also when kombu wrapped it (Celery's ``send_task`` raises ``OperationalError`` from it).
    """
    for seen in causes(exc):
        if isinstance(seen, redis.exceptions.OutOfMemoryError):
            return True
        if isinstance(seen, redis.exceptions.ResponseError) and (
            "OOM command not allowed" in str(seen) or "used memory > 'maxmemory'" in str(seen)
        ):
            return True
    return False


@contextmanager
def redis_full_errors(
    queue: str, submitted: Sequence[Any] = (), pending: int = 0
) -> Iterator[None]:
    """Turn Redis's out-of-memory refusal into :class:`RedisFull` with a message that says why."""
    try:
        yield
    except (redis.exceptions.ResponseError, OperationalError) as exc:
        if not is_redis_full(exc):
            raise
        raise RedisFull(
            "Redis is full (used_memory reached maxmemory, policy noeviction) and refused "
            f"new jobs for queue {queue!r}; let the workers drain it, or raise maxmemory",
            queue=queue,
            submitted=submitted,
            not_submitted=pending,
        ) from exc
