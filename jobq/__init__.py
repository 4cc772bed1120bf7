"""jobq's public API: everything a project that writes or submits jobs imports, from one place.

Declare jobs in your own package, name it in ``JOBQ_JOBS``, submit from anywhere. The names
here are the stable surface; the modules under ``workers``, ``producers`` and ``ops`` are jobq's
own and may move between releases.

Example::

    # myapp/jobs.py (run by workers started with JOBQ_JOBS=myapp.jobs)
    from jobq import cpu_job, io_job

    @io_job(rate="20/s")
    def fetch_invoice(url: str) -> dict: ...

    @cpu_job
    def total(amounts: list[float]) -> float:
        return sum(amounts)

    # a script, a service, a notebook
    from jobq import submit
    print(submit("total", amounts=[1.5, 2.5]).get(timeout=30))
"""

from producers import (
    IdempotencyConflict,
    InvalidArguments,
    JobHandle,
    QueueFull,
    RedisFull,
    UnknownJob,
    cancel,
    correlation,
    submit,
    submit_many,
    validate,
)
from workers.progress import InvalidProgress, progress
from workers.registry import cpu_job, io_job, pipeline
from workers.registry.errors import DuplicateJob, JobLoadError, JobModuleError
from workers.registry.rates import by_host
from workers.stores.progress import Progress

__all__ = [
    "DuplicateJob",
    "IdempotencyConflict",
    "InvalidArguments",
    "InvalidProgress",
    "JobHandle",
    "JobLoadError",
    "JobModuleError",
    "Progress",
    "QueueFull",
    "RedisFull",
    "UnknownJob",
    "by_host",
    "cancel",
    "correlation",
    "cpu_job",
    "io_job",
    "pipeline",
    "progress",
    "submit",
    "submit_many",
    "validate",
]
