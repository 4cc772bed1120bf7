"""``jobq dead retry``: re-submit a dead-lettered job under a new id, its arguments checked again.

The store (:mod:`workers.stores.dead_letters`) holds the entry; re-submitting is a producer's
act, so it lives here, beside ``submit``.

Example::

    new_id = retry_dead("6f1c…")       # the entry is removed once Redis accepted the new job
"""

from __future__ import annotations

from producers.backpressure import AdmissionGate, gated_publish
from workers.app import get_app
from workers.catalog import get_job
from workers.registry import UnknownJob
from workers.registry.schema import InvalidArguments
from workers.settings import get_settings
from workers.stores.dead_letters import NotRetryable, get_dead, remove_dead


def retry_dead(entry_id: str) -> str:
    """Validate the entry's arguments again and submit the job under a new id; return that id.

    The entry is removed once Redis has accepted the new job, so a failed submit keeps it.
    The job passes the admission gate of its queue like any submit (``QueueFull`` past it).
    """
    entry = get_dead(entry_id)
    job, kwargs = entry.get("job"), entry.get("kwargs")
    if not job or not isinstance(kwargs, dict):
        raise NotRetryable(f"{entry_id}: a {entry['reason']} message has no job to re-submit")
    try:
        spec = get_job(job)
        checked = spec.schema.validate(kwargs)
    except (UnknownJob, InvalidArguments) as exc:
        raise NotRetryable(f"{entry_id}: {exc}") from None
    if spec.queue is None:
        raise NotRetryable(f"{entry_id}: {job} is a pipeline; submit it again instead")
    # Positional arguments are a pipeline step's input (the previous step's result): keep them.
    args = entry.get("args") or []
    # None unless the job was fire and forget: the job's own declaration then applies.
    ignore = True if entry.get("ignore_result") else None
    queue = spec.queue

    def send(_: list[None]) -> list[str]:
        result = get_app().send_task(
            spec.name, args=args, kwargs=checked, queue=queue, ignore_result=ignore
        )
        return [str(result.id)]

    # Through the admission gate like any submit (JOBQ_ON_FULL, JOBQ_GATE_TIMEOUT).
    (job_id,) = gated_publish(
        AdmissionGate.for_queue(queue),
        [None],
        send,
        on_full=get_settings().on_full,  # type: ignore[arg-type]
    )
    remove_dead([entry_id])
    return job_id
