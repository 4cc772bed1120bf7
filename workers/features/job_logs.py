"""No per-job log lines at INFO: Celery's "Task … received" / "… succeeded in …" pairs are off.

At hundreds of jobs per second those two lines per job are most of a worker's log volume and a
visible share of its CPU. Failures (ERROR) and the worker's own lifecycle lines still log; so do
the job's own log lines. ``JOBQ_LOG_EACH_JOB=true`` brings the per-job lines (and Celery's retry
lines) back. Plain ``logging`` levels: no private API.

Example::

    $ JOBQ_LOG_EACH_JOB=true jobq worker io     # one line per received/succeeded job again
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import after_setup_logger

from workers.settings import Settings, get_settings

# Celery's per-job INFO lines come from these two loggers only.
PER_JOB_LOGGERS = ("celery.worker.strategy", "celery.app.trace")


def quiet_per_job_lines(**_: Any) -> None:
    """``after_setup_logger`` handler: raise Celery's per-job loggers to WARNING."""
    # Set before the worker builds its task tracers: Celery checks isEnabledFor(INFO) once per
    # tracer, so the skipped lines cost nothing at all, not even their formatting.
    if not get_settings().log_each_job:
        for name in PER_JOB_LOGGERS:
            logger = logging.getLogger(name)
            if logger.getEffectiveLevel() <= logging.INFO:
                logger.setLevel(logging.WARNING)


def install(app: Celery, settings: Settings) -> None:
    """Quiet Celery's per-job INFO lines in ``app``'s workers (unless JOBQ_LOG_EACH_JOB)."""
    after_setup_logger.connect(quiet_per_job_lines, weak=False, dispatch_uid="jobq.job_logs")
