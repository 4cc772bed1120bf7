"""Submitting jobs: ``submit`` one, ``submit_many`` a batch. Arguments are validated first.

Producers publish with Celery's own protocol, so a job submitted here is indistinguishable
from ``app.send_task(name, kwargs=..., queue=...)`` sent by any Celery client.

Example::

    from producers import submit, submit_many

    handle = submit("fetch_url", url="http://127.0.0.1:8000/")
    print(handle.get(timeout=30)["status"])
    handles = submit_many("cpu_spin", [{"ms": 50}] * 100)
    submit_many("io_wait", [{"ms": 5}] * 1000, ignore_result=True)  # fire and forget
    submit("io_wait", ms=5, delay=90)  # runs in 90 s (producers/delay.py)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from celery import Celery

from producers.backpressure import AdmissionGate, GateWait, OnFull, gated_publish
from producers.delay import plan_schedule
from producers.fastpublish import publish_many
from producers.handle import JobHandle
from producers.idempotency import submit_once
from producers.payload import check_size
from workers.app import get_app
from workers.broker.schedule import current_schedule, scheduled
from workers.catalog import get_job
from workers.correlation import current_correlation_id
from workers.registry import JobSpec, UnknownJob
from workers.registry.schema import InvalidArguments
from workers.settings import get_settings


def validate(name: str, arguments: Mapping[str, Any]) -> tuple[JobSpec, dict[str, Any]]:
    """Check a job name and its arguments without sending anything.

    Raises :class:`~workers.registry.UnknownJob` or
    :class:`~workers.registry.schema.InvalidArguments`.
    """
    spec = get_job(name)
    checked = spec.schema.validate(arguments)
    check_size(name, checked)  # oversized arguments are refused (producers/payload.py)
    return spec, checked


def submit(
    name: str,
    /,
    *,
    on_full: OnFull | None = None,
    gate_timeout: float | None = None,
    key: str | None = None,
    ignore_result: bool = False,
    delay: float | timedelta | None = None,
    at: datetime | None = None,
    **arguments: Any,
) -> JobHandle:
    """Validate and enqueue one job; return its handle once Redis has accepted it.

    Over the queue's high-water mark it waits (``on_full="wait"``, up to ``gate_timeout``
    seconds) or raises :class:`~producers.backpressure.QueueFull` (``"fail"``); the defaults
    are ``JOBQ_ON_FULL`` and ``JOBQ_GATE_TIMEOUT``. (Not ``timeout=``: jobs such as
    ``fetch_url`` have an argument of that name.)

    With an idempotency ``key``, a second submit of the same job and key within
    ``JOBQ_IDEMPOTENCY_WINDOW`` returns the job already enqueued (producers/idempotency.py).

    ``ignore_result=True`` is fire and forget: the worker stores no result (its job record,
    ``jobq show ID``, still says how it ended), which saves it a result write per job.

    ``delay=90`` (seconds) or ``at=`` (a timezone-aware datetime) runs it later: the job waits
    in Redis, not in a worker, and skips the admission gate until it is due (docs/delay.md).
    """
    spec, checked = validate(name, arguments)
    schedule = plan_schedule(delay, at)

    def enqueue() -> JobHandle:
        with scheduled(schedule):
            (handle,) = submit_gated(
                spec, [checked], on_full=on_full, timeout=gate_timeout, ignore_result=ignore_result
            )
        return handle

    if key is None:
        return enqueue()
    no_result = stores_no_result(spec, ignore_result)
    return submit_once(spec.name, key, spec.queue, enqueue, no_result=no_result)[0]


def submit_many(
    name: str,
    arguments: Iterable[Mapping[str, Any]],
    *,
    on_full: OnFull | None = None,
    timeout: float | None = None,
    ignore_result: bool = False,
    delay: float | timedelta | None = None,
    at: datetime | None = None,
) -> list[JobHandle]:
    """Validate every item first, then enqueue them all over one connection.

    Nothing is sent if any item is invalid (the error names its index), so a batch is not left
    half-submitted by a typo. For per-line reporting use :func:`submit_validated`.

    The admission gate is checked per batch: over the high-water mark this waits up to
    ``timeout`` seconds or fails at once (``on_full``); :class:`QueueFull` then carries the
    handles of the jobs that were submitted and the count of those that were not.
    ``ignore_result=True``: fire and forget; ``delay``/``at``: run later, all due together; as
    for :func:`submit`.
    """
    spec = get_job(name)
    schedule = plan_schedule(delay, at)
    checked = []
    for index, item in enumerate(arguments):
        try:
            checked.append(spec.schema.validate(item))
            check_size(name, checked[-1])
        except InvalidArguments as exc:
            raise InvalidArguments(name, [f"item {index}: {p}" for p in exc.problems]) from None
    with scheduled(schedule):
        return submit_gated(
            spec, checked, on_full=on_full, timeout=timeout, ignore_result=ignore_result
        )


def check_fire_and_forget(spec: JobSpec, ignore_result: bool) -> None:
    """Refuse fire and forget for a pipeline: its caller waits for its last step's result."""
    if ignore_result and spec.kind == "pipeline":
        raise ValueError(
            f"{spec.name} is a pipeline: its result is its last step's, so it cannot be fire "
            "and forget"
        )


def stores_no_result(spec: JobSpec, ignore_result: bool = False) -> bool:
    """True when jobs of ``spec`` submitted so store no result (asked for, or declared)."""
    return ignore_result or spec.ignore_result


def submit_gated(
    spec: JobSpec,
    batch: Sequence[dict[str, Any]],
    *,
    on_full: OnFull | None = None,
    timeout: float | None = None,
    on_wait: Callable[[GateWait], None] | None = None,
    ignore_result: bool = False,
) -> list[JobHandle]:
    """:func:`submit_validated` behind the admission gate of every queue the job will use."""
    # Every producer path comes through here: refused before the gate reserves anything.
    check_fire_and_forget(spec, ignore_result)
    if not batch:
        return []
    for arguments in batch:  # last guard for every path, bulk files included: nothing is sent
        check_size(spec.name, arguments)
    if current_schedule() is not None:
        # Delayed (workers/broker/schedule.py): not in the queue until due, so not gated now;
        # when due, the mover moves it only into the room below the mark (docs/delay.md).
        return submit_validated(spec, list(batch), ignore_result=ignore_result)
    queues = _gate_queues(spec, batch[0])
    on_full = on_full or get_settings().on_full  # type: ignore[assignment]

    def publish_through(gates: list[str], chunk: list[dict[str, Any]]) -> list[JobHandle]:
        # A pipeline is admitted against every queue it will touch: one gate inside the other,
        # each reserving room for the chunk, so its later steps count too.
        if not gates:
            return submit_validated(spec, chunk, ignore_result=ignore_result)
        return gated_publish(
            AdmissionGate.for_queue(gates[0]),
            chunk,
            lambda inner: publish_through(gates[1:], inner),
            on_full=on_full,  # type: ignore[arg-type]
            timeout=timeout,
            on_wait=on_wait,
        )

    return publish_through(queues, list(batch))


def _gate_queues(spec: JobSpec, sample: dict[str, Any]) -> list[str]:
    """The queues a job of ``spec`` will put jobs in: its own, or each of a pipeline's steps."""
    if spec.queue is not None or spec.build is None:
        return [spec.queue] if spec.queue is not None else []
    canvas = spec.canvas(get_app(), sample)
    steps = canvas.tasks if getattr(canvas, "tasks", None) else [canvas]
    queues: list[str] = []
    for step in steps:
        try:
            queue = get_job(step.task).queue
        except UnknownJob:
            continue
        if queue is not None and queue not in queues:
            queues.append(queue)
    return queues


def submit_validated(
    spec: JobSpec, batch: Iterable[dict[str, Any]], *, ignore_result: bool = False
) -> list[JobHandle]:
    """Enqueue already validated arguments for ``spec``, all over one broker connection."""
    # None, not False: the job's own declaration (@io_job(ignore_result=True)) then applies.
    ignore = True if ignore_result else None
    app = get_app()
    if spec.kind != "pipeline" and app.conf.jobq_fast_paths:
        # Plain jobs: the same Celery messages, built in batches and sent with pipelined LPUSH
        # (producers/fastpublish.py), >10x faster than send_task per job (docs/benchmarks.md).
        # The correlation id in force (workers/correlation.py) goes in their headers.
        assert spec.queue is not None
        # Submitted from inside a running job: a child of it, as send_task would make it.
        parent = app.current_worker_task
        ids = publish_many(
            app,
            spec.name,
            spec.queue,
            batch,
            ignore_result=ignore,
            correlation_id=current_correlation_id(),
            parent_id=parent.request.id if parent else None,
            root_id=(parent.request.root_id or parent.request.id) if parent else None,
        )
        no_result = stores_no_result(spec, ignore_result)
        return [
            JobHandle(id=job_id, name=spec.name, queue=spec.queue, ignore_result=no_result)
            for job_id in ids
        ]
    # Pipelines (canvases), and every job with JOBQ_FAST_PATHS off: Celery's apply_async,
    # whose before_task_publish signal adds jobq's headers (workers/features/publish_headers.py).
    with app.producer_or_acquire() as producer:
        return [_publish(app, spec, checked, producer, ignore) for checked in batch]


def _step_ids(result: Any) -> tuple[str, ...]:
    """A chain's step ids, first to last (Celery links each step's result to the one before)."""
    ids = []
    while result is not None:
        ids.append(result.id)
        result = result.parent
    return tuple(reversed(ids))


def _publish(
    app: Celery, spec: JobSpec, checked: dict[str, Any], producer: Any, ignore: bool | None
) -> JobHandle:
    if spec.kind == "pipeline":
        assert spec.build is not None
        canvas = spec.canvas(app, checked)
        result = canvas.apply_async(producer=producer)
        return JobHandle(id=result.id, name=spec.name, queue=None, steps=_step_ids(result))
    result = app.send_task(
        spec.name, kwargs=checked, queue=spec.queue, producer=producer, ignore_result=ignore
    )
    return JobHandle(
        id=result.id,
        name=spec.name,
        queue=spec.queue,
        ignore_result=stores_no_result(spec, bool(ignore)),
    )
