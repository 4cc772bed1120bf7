"""Submitting jobs: ``submit`` one, ``submit_many`` a batch. Arguments are validated first.

Producers publish with Celery's own protocol, so a job submitted here is indistinguishable
from ``app.send_task(name, kwargs=..., queue=...)`` sent by any Celery client.

Example::

    from producers import submit, submit_many

    handle = submit("fetch_url", url="http://127.0.0.1:8000/")
    print(handle.get(timeout=30)["status"])
    handles = submit_many("cpu_spin", [{"ms": 50}] * 100)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from celery.canvas import Signature

from producers.handle import JobHandle
from workers.app import app
from workers.registry import JobSpec, get_job
from workers.schema import InvalidArguments


def validate(name: str, arguments: Mapping[str, Any]) -> tuple[JobSpec, dict[str, Any]]:
    """Check a job name and its arguments without sending anything.

    Raises :class:`~workers.registry.UnknownJob` or :class:`~workers.schema.InvalidArguments`.
    """
    spec = get_job(name)
    return spec, spec.schema.validate(arguments)


def submit(name: str, /, **arguments: Any) -> JobHandle:
    """Validate and enqueue one job; return its handle once Redis has accepted it."""
    spec, checked = validate(name, arguments)
    with app.producer_or_acquire() as producer:
        return _publish(spec, checked, producer)


def submit_many(name: str, arguments: Iterable[Mapping[str, Any]]) -> list[JobHandle]:
    """Validate every item first, then enqueue them all over one connection.

    Nothing is sent if any item is invalid (the error names its index), so a batch is not left
    half-submitted by a typo. For per-line reporting use :func:`submit_validated`.
    """
    spec = get_job(name)
    checked = []
    for index, item in enumerate(arguments):
        try:
            checked.append(spec.schema.validate(item))
        except InvalidArguments as exc:
            raise InvalidArguments(name, [f"item {index}: {p}" for p in exc.problems]) from None
    return submit_validated(spec, checked)


def submit_validated(spec: JobSpec, batch: Iterable[dict[str, Any]]) -> list[JobHandle]:
    """Enqueue already validated arguments for ``spec``, all over one broker connection."""
    with app.producer_or_acquire() as producer:
        return [_publish(spec, checked, producer) for checked in batch]


def _publish(spec: JobSpec, checked: dict[str, Any], producer: Any) -> JobHandle:
    if spec.kind == "pipeline":
        assert spec.build is not None
        canvas: Signature = spec.build(**checked)
        result = canvas.apply_async(producer=producer)
        return JobHandle(id=result.id, name=spec.name, queue=None)
    result = app.send_task(spec.name, kwargs=checked, queue=spec.queue, producer=producer)
    return JobHandle(id=result.id, name=spec.name, queue=spec.queue)
