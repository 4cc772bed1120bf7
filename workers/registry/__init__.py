"""Declaring jobs: ``@io_job``, ``@cpu_job`` and ``@pipeline``, and looking them up by name.

A job's kind is declared once, where it is defined; its queue and pool follow from the pool
profiles in :mod:`workers.pools`. The registered Celery task name is the job's plain name
(``fetch_url``, not ``workers.jobs.http.fetch_url``), so any Celery client can send it.

Jobs are Celery ``shared_task``s: a module of jobs needs no app, and the app
(workers/app.py) picks them up when it is built. Routing is one router function,
:func:`route_job`, that looks the queue up here.

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

from celery import Celery, Task, current_app, shared_task
from celery.canvas import Signature

from workers.keys import QUEUE_ATTRIBUTE
from workers.pools import POOLS
from workers.registry.errors import DuplicateJob
from workers.registry.rates import KeyFunction, rate_options
from workers.registry.retrying import retry_options
from workers.registry.schema import ArgumentSchema, InvalidArguments
from workers.registry.task import JobTask

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
    # The Celery task for io/cpu jobs (a shared_task proxy); for pipelines, the canvas builder.
    task: Task | None = None
    build: Callable[..., Signature] | None = None
    # As declared: fire and forget by default, the cluster-wide rate and its key function.
    ignore_result: bool = False
    rate: str | None = None
    rate_key: KeyFunction | None = None

    def canvas(self, app: Celery, arguments: dict[str, Any]) -> Signature:
        """A pipeline's canvas for ``arguments``, its steps bound to ``app``.

        The steps are shared tasks, and ``fetch_url.s(...)`` binds to whichever Celery app the
        process made current last (a user's own app, say); building with ``app`` current, then
        restoring the previous one, sends every step through jobq's broker.
        """
        assert self.build is not None, f"{self.name} is not a pipeline"
        previous = current_app._get_current_object()
        app.set_current()
        try:
            return self.build(**arguments)
        finally:
            previous.set_current()

    @property
    def queue(self) -> str | None:
        """The queue an io/cpu job is sent to; pipelines span several queues."""
        return POOLS[self.kind].queue if self.kind in POOLS else None


JOBS: dict[str, JobSpec] = {}
# Where each job was declared: (module, function). A second declaration of a name is refused
# rather than silently replacing the first, which would run one function for the other's jobs.
_DECLARED_BY: dict[str, tuple[str, str]] = {}


def _claim(name: str, func: Callable[..., Any]) -> None:
    """Claim ``name`` for ``func``, or raise :class:`DuplicateJob` naming both declarations.

    The same function declaring its name again is its module being imported again (a failed
    import retried, ``importlib.reload``), not a clash.
    """
    by = (func.__module__, func.__qualname__)
    first = _DECLARED_BY.setdefault(name, by)
    if first != by:
        raise DuplicateJob(name, first, by)


def _register(func: F, kind: Literal["io", "cpu"], options: dict[str, Any]) -> F:
    name = options.pop("name", None) or func.__name__
    _claim(name, func)  # before Celery registers a task under the name
    queue = POOLS[kind].queue
    schema = ArgumentSchema.from_function(func, name=name)
    options = retry_options(options)  # retry_on=(...) -> backoff + jitter (retrying.py)
    options, rate, rate_key = rate_options(options)  # rate="20/s", rate_key=... (rates.py)
    options[QUEUE_ATTRIBUTE] = queue
    task = shared_task(name=name, base=JobTask, schema=schema, **options)(func)
    JOBS[name] = JobSpec(
        name=name,
        kind=kind,
        schema=schema,
        doc=_summary(func),
        task=task,
        ignore_result=bool(options.get("ignore_result", False)),
        rate=rate,
        rate_key=rate_key,
    )
    return task  # type: ignore[no-any-return]


def io_job(func: F | None = None, **options: Any) -> F | Callable[[F], F]:
    """Declare an I/O job: it runs on the gevent pool (queue ``io``).

    ``rate="20/s"`` limits it cluster-wide, ``rate_key=by_host("url")`` per key of its
    arguments (workers/registry/rates.py); ``jobq limits set`` changes the rate at run time.

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
    _claim(func.__name__, func)
    schema = ArgumentSchema.from_function(func)
    JOBS[func.__name__] = JobSpec(
        name=func.__name__, kind="pipeline", schema=schema, doc=_summary(func), build=func
    )
    return func


def route_job(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **_: Any) -> Any:
    """Celery router (``task_routes``): a job goes to its pool's queue, whoever sends it."""
    spec = JOBS.get(name)
    return {"queue": spec.queue} if spec is not None and spec.queue else None


def declared_job(name: str) -> JobSpec:
    """The job declared under ``name`` so far, or :class:`UnknownJob` with the known ones.

    Only jobs whose modules were imported are known: look jobs up with
    :func:`workers.catalog.get_job`, which loads the job modules first.
    """
    try:
        return JOBS[name]
    except KeyError:
        raise UnknownJob(name) from None


def declared_jobs() -> dict[str, JobSpec]:
    """Every job declared so far, by name (see :func:`declared_job`)."""
    return dict(JOBS)


def _summary(func: Callable[..., Any]) -> str:
    return (func.__doc__ or "").strip().splitlines()[0] if func.__doc__ else ""


__all__ = [
    "JOBS",
    "DuplicateJob",
    "InvalidArguments",
    "JobSpec",
    "JobTask",
    "UnknownJob",
    "cpu_job",
    "declared_job",
    "declared_jobs",
    "io_job",
    "pipeline",
    "route_job",
]
