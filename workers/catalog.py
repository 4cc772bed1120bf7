"""The jobs this process knows: the job modules are loaded by name, then jobs looked up.

Job modules are named, not imported: jobq's shipped jobs (``workers.jobs``), and the
fault-injection jobs only where ``JOBQ_FAULT_JOBS`` is on (the tests and ``jobq faults``).
Loading them by name, as Celery's ``include`` does, keeps the import graph one way: job modules
import :mod:`workers.registry`, which imports no job module; this module loads them.

Example::

    >>> get_job("fetch_url").queue
    'io'
"""

from __future__ import annotations

import importlib

from workers.registry import JobSpec, declared_job, declared_jobs
from workers.settings import Settings, get_settings


def job_modules(settings: Settings) -> list[str]:
    """The modules whose jobs this process declares: jobq's shipped jobs, then ``JOBQ_JOBS``."""
    shipped = ["workers.jobs", *(["workers.jobs.faulty"] if settings.fault_jobs else [])]
    return [*shipped, *(name for name in settings.jobs if name not in shipped)]


def load_jobs(settings: Settings | None = None) -> None:
    """Import the job modules (once), which declares their jobs in the registry."""
    for module in job_modules(settings or get_settings()):
        importlib.import_module(module)


def get_job(name: str) -> JobSpec:
    """The job named ``name``, or :class:`~workers.registry.UnknownJob` listing the known ones."""
    load_jobs()
    return declared_job(name)


def all_jobs() -> dict[str, JobSpec]:
    """Every job this process knows, by name."""
    load_jobs()
    return declared_jobs()
