"""The admission gate on the workers' own publishes: a pipeline's next step, a child job, a retry.

Producers pass the gate before they publish (producers/backpressure.py). A worker publishes
too: the next step of a pipeline (``fetch_url`` -> ``analyze_text`` on ``cpu``), a job a job
sends with ``apply_async``, a retry. All go through ``app.send_task``, which this feature wraps:
in a running job, each publish first waits for room in its queue (one reservation, released
once the job is in the queue), before Celery takes a broker connection for it:

* a **new job** (another id than the running one) waits under the queue's high-water mark,
  like a producer. An I/O job waiting for room on ``cpu`` holds its I/O slot, but ``cpu`` is
  drained by the CPU pool, which does not wait on ``io``, so it frees up. Only a cycle (a CPU
  step publishing to ``io`` while I/O steps wait on ``cpu``, both full) could hold everyone;
  so the wait is bounded by ``JOBQ_WORKER_GATE_WAIT``, after which the job is published over
  the mark with a warning: never lost, and the overshoot is at most one job per waiting slot.
* a **re-published job** (a retry: the running job's own id) replaces a message already
  counted, and would otherwise wait on a queue its own slot helps drain; it is admitted
  against twice the high-water mark, with the same bounded wait.

Outside a running job nothing waits here: the main process re-sending a job whose process was
lost must not stall the worker's event loop (the job was counted when it was admitted), and the
rate-limit mover checks the queue itself before moving parked jobs back
(workers/features/rate_limits.py). Publishes a producer already admitted (``submit`` inside a
job) pass unchecked. Producers' processes are not affected.

Example::

    install(app, settings)      # from workers/app.py
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_process_init

from workers.broker.schedule import current_schedule
from workers.keys import QUEUE_ATTRIBUTE
from workers.settings import Settings, get_settings
from workers.stores.admission import ADMITTED, Admission, AdmissionGate, WaterMarks, marks_for

log = logging.getLogger(__name__)

MAX_POLL_INTERVAL = 0.5
_state = {"in_worker": False}


def _in_worker(**_: Any) -> None:
    _state["in_worker"] = True


def _running_job_id(app: Celery) -> str | None:
    task = app.current_worker_task  # None outside a job: the mover, the main process
    return None if task is None else task.request.id


def gate_for(queue: str, *, republish: bool) -> AdmissionGate | None:
    """The gate a worker's publish to ``queue`` passes; None where the queue has no gate."""
    marks = marks_for(queue)
    if not marks.enabled:
        return None
    if republish:
        # Its own hysteresis flag: the producers' closed gate must not hold a retry.
        return AdmissionGate(queue, WaterMarks(2 * marks.high, marks.high), flag="republish")
    return AdmissionGate(queue, marks)


def wait_for_room(gate: AdmissionGate, job_id: str, deadline_s: float) -> Admission | None:
    """Reserve room for one job, waiting up to ``deadline_s``; None when the wait ran out."""
    token = uuid.uuid4().hex
    started = time.monotonic()
    poll, said = 0.02, False
    while True:
        admission = gate.try_admit(1, token)
        if admission.granted:
            return admission
        waited = time.monotonic() - started
        if waited >= deadline_s:
            return None
        if not said:
            log.info(
                "job %s waits for room in queue %r (backlog %d, high-water %d)",
                job_id,
                gate.queue,
                admission.backlog,
                gate.marks.high,
            )
            said = True
        time.sleep(min(poll, deadline_s - waited))  # gevent's sleep on the I/O pool
        poll = min(poll * 2, MAX_POLL_INTERVAL)


def admit_publish(
    app: Celery, queue: str, job_id: str | None
) -> tuple[AdmissionGate, Admission] | None:
    """In a running job, wait for room for one job in ``queue``; the reservation, if any."""
    running = _running_job_id(app)
    if not _state["in_worker"] or ADMITTED.get() or running is None:
        return None
    if current_schedule() is not None:
        return None  # a delayed submit: not in the queue until due, when the mover checks room
    gate = gate_for(queue, republish=job_id == running)
    if gate is None:
        return None
    wait_s = get_settings().worker_gate_wait
    admission = wait_for_room(gate, job_id or "(new)", wait_s)
    if admission is None:
        log.warning(
            "a job was published to queue %r over its high-water mark %d after waiting %g s",
            queue,
            gate.marks.high,
            wait_s,
        )
        return None
    return gate, admission


def _release(held: tuple[AdmissionGate, Admission] | None) -> None:
    if held is None:
        return
    gate, admission = held
    try:
        gate.release(admission)
    except Exception:  # the reservation's lease frees the room anyway
        log.warning("could not release a reservation on queue %r", gate.queue, exc_info=True)


def gated_send_task(app: Celery, send_task: Callable[..., Any]) -> Callable[..., Any]:
    """``app.send_task`` that first waits at the gate of the job's queue (in a running job).

    Waiting here, before Celery takes a broker connection from its pool, keeps waiting jobs
    from holding the connections other jobs need to publish to queues that have room.
    """

    @functools.wraps(send_task)
    def send(name: str, *args: Any, **options: Any) -> Any:
        queue = options.get("queue") or getattr(app.tasks.get(name), QUEUE_ATTRIBUTE, None)
        held = admit_publish(app, queue, options.get("task_id")) if isinstance(queue, str) else None
        try:
            return send_task(name, *args, **options)
        finally:
            _release(held)

    return send


def install(app: Celery, settings: Settings) -> None:
    """Gate the publishes of running jobs in worker processes of ``app``."""
    worker_init.connect(_in_worker, weak=False, dispatch_uid="jobq.publish_gate.worker")
    worker_process_init.connect(_in_worker, weak=False, dispatch_uid="jobq.publish_gate.child")
    app.send_task = gated_send_task(app, app.send_task)  # type: ignore[method-assign]
