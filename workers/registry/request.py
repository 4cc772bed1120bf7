"""``JobRequest``: a job whose end cannot be recorded is left to its lease, never acknowledged.

Celery acknowledges an acks-late job once it has ended, however it ended. Two endings must not
be acknowledged, or the job vanishes without a trace:

* the job failed for good and its dead letter could not be stored (Redis away for a moment):
  the failure would be in no store at all;
* a check that runs before the job's body (delivery limit, rate-limit turn, park) could not
  reach Redis: the job never ran, yet Celery would count it as failed.

In both cases this request forgets the delivery without acknowledging it
(:func:`~workers.features.leases.leave_to_lease`): the message stays in ``unacked`` and comes
back when its lease expires, to be run (or dead-lettered) again once Redis answers.

``JobTask.Request`` names this class, so every jobq job's deliveries use it.

Example::

    raise LeftToLease("Redis unreachable before the job started")   # in JobTask.__call__
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery.exceptions import Ignore, Reject, Retry
from celery.worker.request import Request
from celery.worker.state import task_ready

from workers.features.cancellation import JobCancelled
from workers.features.dead_letters import dead_letter_outcome
from workers.features.leases import leave_to_lease
from workers.stores.dead_letters import is_dead

log = logging.getLogger(__name__)


class LeftToLease(Ignore):
    """The job did not run because Redis was unreachable; its delivery is left to its lease.

    An :class:`~celery.exceptions.Ignore`, so Celery neither stores a failure nor sends
    ``task_failure`` for it.
    """


def _exception(exc_info: Any) -> BaseException | None:
    exc = getattr(exc_info, "exception", None)
    return getattr(exc, "exc", exc)  # ExceptionWithTraceback wraps the original


def _is_named(exc: BaseException | None, cls: type) -> bool:
    # A prefork child's exception may come back wrapped, with only its class name kept.
    return isinstance(exc, cls) or getattr(exc, "exc_cls_name", None) == cls.__name__


class JobRequest(Request):
    """Celery's request, leaving a job to its lease when its end cannot be recorded."""

    _deferring = False
    _ack_wanted = False

    def acknowledge(self) -> None:
        if self._deferring:
            self._ack_wanted = True  # decided in on_failure, once the dead letter is known
            return
        super().acknowledge()

    def on_success(self, failed__retval__runtime: Any, **kwargs: Any) -> Any:
        if self._already_revoked:
            # Cancelled while running (workers/features/cancellation.py): Celery acknowledged it
            # and stored REVOKED; a killed greenlet's return is no success to announce.
            return None
        return super().on_success(failed__retval__runtime, **kwargs)

    def on_failure(self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False):
        exc = _exception(exc_info)
        if _is_named(exc, JobCancelled):
            # Refused right before its body: acknowledged, REVOKED, recorded; not a failure.
            if not self._already_revoked:
                self._announce_revoked("cancelled", False, None, False)
            return None
        if _is_named(exc, LeftToLease):
            task_ready(self)
            self._leave(f"{exc}")
            return None
        self._deferring = True
        try:
            result = super().on_failure(exc_info, send_failed_event, return_ok)
        finally:
            self._deferring = False
        if self._ack_wanted:
            if self._dead_letter_missing(exc, return_ok):
                self._leave("its dead letter could not be stored")
            else:
                super().acknowledge()
        return result

    def _dead_letter_missing(self, exc: BaseException | None, return_ok: bool) -> bool:
        """True if this failure should have a dead letter and none was stored."""
        outcome = dead_letter_outcome(self.id)  # known when the handler ran in this process
        if outcome is not None:
            return not outcome
        if not return_ok or any(_is_named(exc, cls) for cls in (Ignore, Reject, Retry)):
            return False  # no dead letter was due (or it was due here and is known above)
        # A prefork child ran the handler: look in the store (Redis away means not stored).
        try:
            return not is_dead(self.id)
        except redis.RedisError:
            return True

    def _leave(self, why: str) -> None:
        log.warning(
            "%s[%s] left unacknowledged (%s): it comes back when its lease expires",
            self.task.name,
            self.id,
            why,
        )
        self.acknowledged = True  # done on this worker; nothing may ack it later
        self.left_to_lease = True  # not even a reconnect (workers/features/connection_loss.py)
        leave_to_lease(self.message)
