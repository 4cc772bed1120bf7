"""``JobHandle``: what ``submit`` returns, to follow one job to its result.

Example::

    handle = submit("io_wait", ms=100)
    handle.id          # the Celery task id
    handle.get(timeout=10)
    handle.progress()  # Progress(done=…, total=…, note=…) once the job reported some
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from celery.result import AsyncResult

from workers.app import get_app
from workers.stores.progress import Progress, read_progress


@dataclass(frozen=True)
class JobHandle:
    """A submitted job: its id, name and queue, and a way to wait for its result."""

    id: str
    name: str
    queue: str | None
    # Fire and forget: the worker stores no result, so there is nothing to wait for.
    ignore_result: bool = False
    # A pipeline's step ids, first to last (the last is ``id``); empty for a plain job.
    steps: tuple[str, ...] = ()

    @property
    def result(self) -> AsyncResult:
        """Celery's AsyncResult for this job (for a pipeline, its last step)."""
        return AsyncResult(self.id, app=get_app())

    @property
    def state(self) -> str:
        """PENDING, PROGRESS, RETRY, SUCCESS or FAILURE, as the result backend has it."""
        return self.result.state

    def get(self, timeout: float | None = None, *, propagate: bool = True) -> Any:
        """Wait up to ``timeout`` seconds for the result; re-raise the job's error by default.

        A fire-and-forget job has no result: this raises at once instead of waiting forever.
        """
        if self.ignore_result:
            raise RuntimeError(
                f"job {self.id} was submitted fire and forget (ignore_result=True): it stores "
                f"no result to wait for; its record says how it ended (jobq show {self.id})"
            )
        return self.result.get(timeout=timeout, propagate=propagate)

    def cancel(self) -> list[str]:
        """Cancel this job (a pipeline: every step); it never starts, or stops (docs/cancel.md).

        Returns the ids cancelled. A job that already finished keeps its outcome.
        """
        from producers.cancel import cancel

        return cancel([self])

    def progress(self) -> Progress | None:
        """How far the job got, from ``progress()`` calls in its body; None if it reported none.

        The latest value written (at most a quarter of a second old while the job runs, the last
        one reported once it ended), fire-and-forget jobs included.
        """
        return read_progress([self.id])[0]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (for ``--json``)."""
        return {"id": self.id, "job": self.name, "queue": self.queue}
