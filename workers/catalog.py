"""The jobs this process knows: the job modules are loaded by name, then jobs looked up.

Job modules are named, not imported: jobq's shipped jobs (``workers.jobs``), the
fault-injection jobs only where ``JOBQ_FAULT_JOBS`` is on (the tests and ``jobq faults``), then
the project's own modules named in ``JOBQ_JOBS``. Loading them by name, as Celery's ``include``
does, keeps the import graph one way: job modules import :mod:`workers.registry`, which imports
no job module; this module loads them.

A module that fails to import, or a job name declared twice, raises a
:class:`~workers.registry.errors.JobLoadError` whose message is one line: commands print it and
exit 2 (ops/entry.py; the ``celery`` command, :func:`load_jobs_or_exit`).

Example::

    >>> get_job("fetch_url").queue
    'io'
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from workers.registry import JobSpec, declared_job, declared_jobs
from workers.registry.errors import JobLoadError, JobModuleError
from workers.settings import Settings, get_settings

EXIT_BAD_JOBS = 2


def job_modules(settings: Settings) -> list[str]:
    """The modules whose jobs this process declares: jobq's shipped jobs, then ``JOBQ_JOBS``."""
    shipped = ["workers.jobs", *(["workers.jobs.faulty"] if settings.fault_jobs else [])]
    return [*shipped, *(name for name in settings.jobs if name not in shipped)]


def load_jobs(settings: Settings | None = None) -> None:
    """Import the job modules (once), which declares their jobs in the registry.

    ``JOBQ_JOBS`` modules are found on ``sys.path``, then in the current directory (last, so
    it can shadow no installed library); jobq's own modules only on ``sys.path``.
    Raises :class:`~workers.registry.errors.DuplicateJob` for a name declared twice and
    :class:`~workers.registry.errors.JobModuleError` for any other error while importing.
    """
    settings = settings or get_settings()
    for module in job_modules(settings):
        if module in sys.modules:
            continue  # loaded: the common case, every submit comes through here
        try:
            if module in settings.jobs:
                with _cwd_last_on_path():
                    importlib.import_module(module)
            else:
                importlib.import_module(module)  # jobq's own: never from the current directory
        except JobLoadError:
            raise  # a clash: its message already names both declarations
        except (Exception, SystemExit) as exc:  # whatever the module's code raised, said once
            raise JobModuleError(module, exc, where=_where(exc)) from exc


@contextmanager
def _cwd_last_on_path() -> Iterator[None]:
    # The project's own modules may sit in the current directory (as Celery finds them), but
    # last on the path: a file there named like an installed library (say geventhttpclient.py)
    # must not replace it in every `jobq` command run from that directory.
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.append(cwd)
    try:
        yield
    finally:
        if added:
            with suppress(ValueError):
                sys.path.remove(cwd)


def load_jobs_or_exit(settings: Settings | None = None) -> None:
    """:func:`load_jobs`; in the ``celery`` command, a failure is one line on stderr and exit 2.

    ``celery -A workers.app worker`` would print a traceback of the app's loading (and Docker
    would restart it into the same traceback); elsewhere the error is raised for the caller.
    """
    try:
        load_jobs(settings)
    except JobLoadError as exc:
        if not _in_celery_command():
            raise
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_BAD_JOBS) from None


def get_job(name: str) -> JobSpec:
    """The job named ``name``, or :class:`~workers.registry.UnknownJob` listing the known ones."""
    load_jobs()
    return declared_job(name)


def all_jobs() -> dict[str, JobSpec]:
    """Every job this process knows, by name."""
    load_jobs()
    return declared_jobs()


def _where(exc: BaseException) -> str | None:
    """``file:line`` of the innermost frame of ``exc`` that is not the import machinery."""
    if isinstance(exc, SyntaxError):
        return None  # where the code could not be parsed: JobModuleError says it
    machinery = (__file__, str(Path(importlib.__file__).parent))
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if not frame.filename.startswith(("<", *machinery))
    ]
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else None


def _in_celery_command() -> bool:
    """This process is the ``celery`` command (``celery …`` or ``python -m celery …``)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    started_as = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return (spec is not None and spec.name == "celery.__main__") or started_as == "celery"
