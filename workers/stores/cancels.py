"""Cancels in Redis: one key per cancelled job, read by every worker, online or not yet started.

A cancel is ``jobq:cancel:<id>`` holding ``{"who": ..., "when": ...}``, kept as long as results
(``JOBQ_RESULT_EXPIRES``). Being data in Redis, not a message to the workers that happen to be
online (Celery's revoke), it holds for a worker that is offline, restarting or not yet started,
and survives a Redis restart with the append-only file. Three places read it:

* the take script (``workers/broker/fetch_and_record.lua``) drops a queued job whose cancel it
  finds, in the same atomic step that would have taken it, and records it as revoked;
* the lease renewal (``workers/features/leases.py``) asks, in its round trip, which of the jobs
  its worker holds are cancelled (:func:`queue_lookup`);
* ``jobq cancel`` writes it (:func:`store_cancels`).

Example::

    >>> store_cancels(get_redis(), ["6f1c…"], who="alice@laptop", expires=86400)
    >>> read_cancel(get_redis(), "6f1c…")
    {'who': 'alice@laptop', 'when': 1764540000.0}
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

from workers.keys import CANCEL_PREFIX

# The record state of a cancelled job: Celery's own, so `jobq show`, Flower and AsyncResult agree.
CANCELLED_STATE = "REVOKED"


def cancel_key(job_id: str) -> str:
    """The Redis key of ``job_id``'s cancel.

    >>> cancel_key("abc")
    'jobq:cancel:abc'
    """
    return CANCEL_PREFIX + job_id


def store_cancels(client: Any, job_ids: Iterable[str], who: str, expires: int) -> None:
    """Cancel ``job_ids``: one pipelined ``SET … EX`` each (a cancel written twice is one)."""
    value = json.dumps({"who": who, "when": time.time()})
    pipe = client.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.set(cancel_key(job_id), value, ex=expires)
    pipe.execute()


def parse_cancel(raw: str | bytes | None) -> dict[str, Any] | None:
    """The ``{"who", "when"}`` of a stored cancel, or None when there is none.

    >>> parse_cancel('{"who": "a", "when": 1.5}')
    {'who': 'a', 'when': 1.5}
    >>> parse_cancel(None) is None
    True
    """
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        value = {}  # written by hand: still a cancel
    return normalized_cancel(value if isinstance(value, dict) else {})


def normalized_cancel(value: dict[str, Any]) -> dict[str, Any]:
    """``{"who": str, "when": float | None}`` from whatever a key or a control message held.

    >>> normalized_cancel({"who": 7, "when": "abc"})
    {'who': '7', 'when': None}
    """
    when = value.get("when")
    try:
        when = float(when) if when is not None and not isinstance(when, bool) else None
    except (TypeError, ValueError):
        when = None
    if when is not None and when != when:  # NaN
        when = None
    who = value.get("who")
    return {"who": str(who)[:200] if who is not None else "?", "when": when}


def read_cancel(client: Any, job_id: str) -> dict[str, Any] | None:
    """``job_id``'s cancel, or None."""
    return parse_cancel(client.get(cancel_key(job_id)))


def queue_lookup(pipe: Any, job_ids: Sequence[str]) -> None:
    """Add to ``pipe`` the read of these jobs' cancels (one ``MGET``); see :func:`cancelled_of`."""
    if job_ids:
        pipe.mget([cancel_key(job_id) for job_id in job_ids])


def cancelled_of(job_ids: Sequence[str], reply: Sequence[Any] | None) -> dict[str, dict[str, Any]]:
    """The cancelled ones among ``job_ids``, from the ``MGET`` reply of :func:`queue_lookup`.

    >>> cancelled_of(["a", "b"], [None, '{"who": "x", "when": 2.0}'])
    {'b': {'who': 'x', 'when': 2.0}}
    """
    found: dict[str, dict[str, Any]] = {}
    for job_id, raw in zip(job_ids, reply or (), strict=False):
        value = parse_cancel(raw)
        if value is not None:
            found[job_id] = value
    return found
