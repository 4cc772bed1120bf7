"""``--jobs myapp.jobs,billing.jobs``: the command-line form of ``JOBQ_JOBS``, for any command.

The option sets ``JOBQ_JOBS`` in this process's environment, so the settings read from then on,
and every process the command starts (``jobq worker`` execs ``celery worker``, ``jobq up``
starts workers), load the same job modules: workers and producers agree on what a job is. It
replaces ``JOBQ_JOBS``, it does not add to it. A bad module name is a bad setting (exit 2).

Example::

    @click.command()
    @jobs_option
    def worker_command() -> None: ...

    $ jobq worker io --jobs myapp.jobs,billing.jobs
"""

from __future__ import annotations

import os
from typing import Any

import click

from workers.settings import get_settings

ENV_NAME = "JOBQ_JOBS"


def use_job_modules(value: str | None) -> None:
    """Make ``value`` (comma-separated module names) this process's and its children's jobs."""
    if value is None:
        return
    os.environ[ENV_NAME] = value
    get_settings.cache_clear()  # settings read before now (none, usually) are read again
    get_settings()  # a bad name fails here, before anything starts (ops/entry.py: exit 2)


def _callback(_ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    use_job_modules(value)


jobs_option: Any = click.option(
    "--jobs",
    metavar="MODULES",
    expose_value=False,
    is_eager=True,  # before other options' callbacks, which may read the settings
    callback=_callback,
    help="Your job modules, comma-separated (myapp.jobs,billing.jobs): sets JOBQ_JOBS for this "
    "command and the processes it starts.",
)
