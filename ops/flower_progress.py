"""Flower's ``format_task`` for jobq: a task in state ``PROGRESS`` shows its progress as its result.

A job's ``progress()`` sends a ``task-progress`` event; Celery's event state turns an unknown
``task-<name>`` event into state ``NAME``, so Flower lists the task as ``PROGRESS``. Flower's task
page only prints Celery's known task fields, though, and hands ``format_task`` a copy made from
those fields alone (``Task.__reduce__``), without the event's ``done``/``total``/``note``. So this
formatter, set in ``ops/flower_config.py``, reads the job's stored progress from Redis (one GET,
only for a task in state ``PROGRESS``) and writes ``4200/10000 (42%) note`` into the "Result" row
and the tasks table's result column. The job's real result replaces it when it ends.

Example::

    format_task = ops.flower_progress.format_task    # in Flower's configuration file
"""

from __future__ import annotations

import logging
from typing import Any

from workers.progress import PROGRESS_STATE
from workers.stores.progress import read_progress

logger = logging.getLogger(__name__)


def format_task(task: Any) -> Any:
    """``task`` with ``result`` set to its progress, if it is in state ``PROGRESS``."""
    if getattr(task, "state", None) != PROGRESS_STATE:
        return task
    (value,) = read_progress([task.uuid])
    if value is not None:
        task.result = value.describe()
    return task
