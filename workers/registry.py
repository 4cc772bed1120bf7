"""Declaring jobs: ``@io_job``, ``@cpu_job`` and ``@pipeline``.

A job's kind is declared once, where it is defined; its queue and pool follow from the pool
profiles in :mod:`workers.pools`. The registered Celery task name is the job's plain name
(``fetch_url``, not ``workers.jobs.http.fetch_url``), so any Celery client can send it.

Example::

    @io_job
    def ping_host(url: str, timeout: float = 5.0) -> dict: ...

    @cpu_job
    def checksum(text: str) -> str: ...
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from celery import Task
from celery.canvas import Signature

from workers.app import app
from workers.delivery_limit import check_delivery_limit
from workers.pools import POOLS
from workers.ratelimit import rate_options, wait_for_turn
from workers.retrying import retry_options
from workers.schema import ArgumentSchema, InvalidArguments
from workers.timelimits import soft_time_limit

JobKind = Literal["io", "cpu", "pipeline"]
F = TypeVar("F", bound=Callable[..., Any])


class UnknownJob(LookupError):
    """No job with that name is registered."""

    def __init__(self, name: str) -> None:
        self.name = name
        known = ", ".join(sorted(JOBS)) or "none"
        super().__init__(f"unknown job {name!r} (known jobs: {known})")


@dataclass(frozen=True)
class JobSpec:
    """Everything a producer needs to know about a job: where it goes and what it accepts."""

    name: str
    kind: JobKind
    schema: ArgumentSchema
    doc: str
    # The Celery task for io/cpu jobs; for pipelines, a function building the canvas.
    task: Task | None = None
    build: Callable[..., Signature] | None = None

    @property
    def queue(self) -> str | None:
        """The queue an io/cpu job is sent to; pipelines span several queues."""
        return POOLS[self.kind].queue if self.kind in POOLS else None


JOBS: dict[str, JobSpec] = {}


class JobTask(Task):
    """Base task of every jobq job: validates arguments again on the worker before running.

    A message can come from any Celery client, not only jobq's producers, so the worker does not
    trust that its arguments were checked.
    """

    schema: ArgumentSchema
    typing = False  # validation below replaces Celery's signature check, with better errors
    # A job whose process died is re-sent at once (task_retry_on_worker_lost uses this delay;
    # Celery's default of 180 s would hold a SIGKILLed child's job back for three minutes).
    # Declared transient errors compute their own backoff (workers/retrying.py).
    default_retry_delay = 0
    # Fire-and-forget jobs (ignore_result) still store a failure and its traceback: it costs a
    # write only when a job fails, and `jobq show ID` can then say why.
    store_errors_even_if_ignored = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # A job whose runs keep killing their process is refused here (workers/delivery_limit.py).
        check_delivery_limit(self)
        # Cluster-wide rate limit: wait for this job's turn, or park it in Redis until then
        # (workers/ratelimit.py); not Celery's per-worker rate_limit.
        wait_for_turn(self, kwargs)
        # gevent has no soft time limit of its own; this adds one (workers/timelimits.py).
        with soft_time_limit(self):
            if args:
                # Positional arguments come only from a chain handing over the previous result.
                return super().__call__(*args, **self.schema.validate(kwargs))
            return super().__call__(**self.schema.validate(kwargs))


def _register(func: F, kind: Literal["io", "cpu"], options: dict[str, Any]) -> F:
    name = options.pop("name", None) or func.__name__
    queue = POOLS[kind].queue
    schema = ArgumentSchema.from_function(func, name=name)
    options = retry_options(options)  # retry_on=(...) -> backoff + jitter (workers/retrying.py)
    options = rate_options(options)  # rate="20/s", rate_key=... (workers/ratelimit.py)
    task = app.task(name=name, base=JobTask, queue=queue, schema=schema, **options)(func)
    JOBS[name] = JobSpec(name=name, kind=kind, schema=schema, doc=_summary(func), task=task)
    # Routing by name, so send_task("fetch_url") from any client lands on the right queue.
    app.conf.task_routes = {**(app.conf.task_routes or {}), name: {"queue": queue}}
    return task  # type: ignore[return-value]


def io_job(func: F | None = None, **options: Any) -> F | Callable[[F], F]:
    """Declare an I/O job: it runs on the gevent pool (queue ``io``).

    ``rate="20/s"`` limits it cluster-wide, ``rate_key=by_host("url")`` per key of its
    arguments (workers/ratelimit.py); ``jobq limits set`` changes the rate at run time.

    Celery task options (``max_retries``, ``autoretry_for`` …) pass through. A positional-only
    first parameter (``def f(previous, /, …)``) receives the result of the step before it in a
    pipeline and is not part of the job's schema.
    """
    if func is None:
        return lambda f: _register(f, "io", options)
    return _register(func, "io", options)


def cpu_job(func: F | None = None, **options: Any) -> F | Callable[[F], F]:
    """Declare a CPU job: it runs on the prefork pool (queue ``cpu``)."""
    if func is None:
        return lambda f: _register(f, "cpu", options)
    return _register(func, "cpu", options)


def pipeline(func: Callable[..., Signature]) -> Callable[..., Signature]:
    """Declare a pipeline: ``func(**arguments)`` returns the Celery canvas to run.

    Submitting a pipeline validates its arguments like any job, then sends the canvas; the
    handle returned follows the last step.
    """
    schema = ArgumentSchema.from_function(func)
    JOBS[func.__name__] = JobSpec(
        name=func.__name__, kind="pipeline", schema=schema, doc=_summary(func), build=func
    )
    return func


def get_job(name: str) -> JobSpec:
    """Look a job up by name, raising :class:`UnknownJob` with the list of known jobs."""
    import workers.jobs  # noqa: F401  (registers the shipped jobs)

    try:
        return JOBS[name]
    except KeyError:
        raise UnknownJob(name) from None


def all_jobs() -> dict[str, JobSpec]:
    """Every registered job, by name."""
    import workers.jobs  # noqa: F401

    return dict(JOBS)


def _summary(func: Callable[..., Any]) -> str:
    return (func.__doc__ or "").strip().splitlines()[0] if func.__doc__ else ""


__all__ = [
    "JOBS",
    "InvalidArguments",
    "JobSpec",
    "JobTask",
    "UnknownJob",
    "all_jobs",
    "cpu_job",
    "get_job",
    "io_job",
    "pipeline",
]

# The pool kill switch (remote-control commands, start-up check) must be loaded in every worker,
# and every worker imports the registry through the shipped jobs.
import workers.pause  # noqa: E402, F401
