"""The dead-letter store: jobs that failed for good, and messages that were refused.

A job ends up here when it raised an error that is not a declared transient one, exhausted its
retries, hit its hard time limit, kept killing its worker process, or had arguments that fail
its schema. A message that could not be a job at all (pickle, not JSON, no task header, unknown
job name) is kept here too, with its raw body, instead of being dropped (workers/rejection.py).
Nothing here expires with time: ``jobq dead purge`` removes entries. The store is capped at
``JOBQ_DEAD_LETTER_MAX`` entries (100 000): past it the oldest are dropped, so a flood of bad
messages cannot fill Redis.

Storage: one Redis hash ``jobq:dead`` (id -> JSON entry) and a sorted set ``jobq:dead:index``
(id by time), so listing is ordered and ``show``/``retry`` by id are O(1).

Example::

    >>> [entry["reason"] for entry in list_dead(limit=5)]
    ['failed', 'unknown_job']
    >>> retry_dead(entry_id)        # re-submits the job under a new id; returns it
"""

from __future__ import annotations

import json
import logging
import time
import traceback as traceback_module
import uuid
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded, WorkerLostError
from celery.signals import task_failure

from workers.redis_client import get_redis
from workers.schema import InvalidArguments
from workers.settings import get_settings

log = logging.getLogger(__name__)

# Raw bodies of refused messages are kept for diagnosis, but one huge message must not fill Redis.
MAX_BODY_CHARS = 65_536

# Why an entry is dead. Rejected messages never ran; failed jobs ran (or started) at least once.
REASONS = {
    "failed": "the job raised an error that is not declared transient",
    "retries_exhausted": "a declared transient error persisted through every retry",
    "worker_lost": "the job's process died on every attempt (segfault, os._exit, OOM kill)",
    "delivery_limit": "the job was started too many times without finishing",
    "time_limit": "the job exceeded its time limit",
    "invalid_arguments": "the arguments fail the job's schema (not run)",
    "unknown_job": "no job with that name is registered (not run)",
    "content_disallowed": "the message uses a content type other than JSON, e.g. pickle (not run)",
    "decode_error": "the message body is not valid JSON (not run)",
    "malformed": "the message is not a Celery task message (not run)",
}


# Store one entry and, past the cap, drop the oldest (in chunks: Lua's unpack has a limit).
# KEYS: data hash, index; ARGV: id, entry, time, cap (0 = none). Returns how many were dropped.
_STORE = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
local cap = tonumber(ARGV[4])
if cap <= 0 then return 0 end
local excess = redis.call('ZCARD', KEYS[2]) - cap
local dropped = 0
while excess > 0 do
  local oldest = redis.call('ZRANGE', KEYS[2], 0, math.min(excess, 1000) - 1)
  redis.call('HDEL', KEYS[1], unpack(oldest))
  redis.call('ZREM', KEYS[2], unpack(oldest))
  dropped = dropped + #oldest
  excess = excess - #oldest
end
return dropped
"""


class DeadLetterNotFound(LookupError):
    """No dead letter with that id."""


class NotRetryable(ValueError):
    """A dead letter that cannot be re-submitted (e.g. a refused pickle message)."""


def _keys() -> tuple[str, str]:
    key = get_settings().dead_letter_key
    return key, key + ":index"


def dead_letter(entry: dict[str, Any]) -> str:
    """Store ``entry`` (needs ``reason``; ``id`` is generated if missing); return its id."""
    entry = {"dead_at": time.time(), **entry}
    entry.setdefault("id", f"msg-{uuid.uuid4()}")
    body = entry.get("body")
    if isinstance(body, str) and len(body) > MAX_BODY_CHARS:
        entry["body"] = body[:MAX_BODY_CHARS] + "…(truncated)"
    data_key, index_key = _keys()
    limit = get_settings().dead_letter_max
    dropped = get_redis().eval(
        _STORE, 2, data_key, index_key, entry["id"], json.dumps(entry, default=repr),
        entry["dead_at"], limit,
    )  # fmt: skip
    log.error("dead-lettered %s (%s): %s", entry["id"], entry["reason"], entry.get("error", ""))
    if dropped:
        log.warning("dead-letter store full (%d): dropped the %d oldest", limit, dropped)
    return str(entry["id"])


def list_dead(limit: int = 50, reason: str | None = None) -> list[dict[str, Any]]:
    """The newest dead letters first (at most ``limit``), optionally of one ``reason``."""
    data_key, index_key = _keys()
    client = get_redis()
    ids = client.zrevrange(index_key, 0, -1 if reason else max(0, limit - 1))
    entries = []
    for raw in client.hmget(data_key, ids) if ids else []:
        if raw is None:
            continue
        entry = json.loads(raw)
        if reason is None or entry.get("reason") == reason:
            entries.append(entry)
        if len(entries) >= limit:
            break
    return entries


def count_dead() -> int:
    return int(get_redis().hlen(_keys()[0]))


def get_dead(entry_id: str) -> dict[str, Any]:
    raw = get_redis().hget(_keys()[0], entry_id)
    if raw is None:
        raise DeadLetterNotFound(f"no dead letter {entry_id!r}")
    return dict(json.loads(raw))


def remove_dead(entry_ids: list[str]) -> int:
    """Delete these entries; return how many existed."""
    if not entry_ids:
        return 0
    data_key, index_key = _keys()
    pipe = get_redis().pipeline(transaction=True)
    pipe.hdel(data_key, *entry_ids)
    pipe.zrem(index_key, *entry_ids)
    removed, _ = pipe.execute()
    return int(removed)


def purge_dead(reason: str | None = None) -> int:
    """Delete every entry (or every entry of one ``reason``); return how many."""
    if reason is None:
        data_key, index_key = _keys()
        count = count_dead()
        get_redis().delete(data_key, index_key)
        return count
    ids = [entry["id"] for entry in list_dead(limit=10**9, reason=reason)]
    return remove_dead(ids)


def retry_dead(entry_id: str) -> str:
    """Validate the entry's arguments again and submit the job under a new id; return that id.

    The entry is removed once Redis has accepted the new job, so a failed submit keeps it.
    """
    from workers.app import app
    from workers.registry import UnknownJob, get_job

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
    result = app.send_task(
        spec.name, args=args, kwargs=checked, queue=spec.queue, ignore_result=ignore
    )
    remove_dead([entry_id])
    return str(result.id)


def failure_reason(task: Task, exc: BaseException, name: str | None = None) -> str:
    """Classify a terminal failure for the dead-letter entry (``name``: the original class)."""
    from workers.delivery_limit import DeliveryLimitExceeded

    if (name or _exception_name(exc)) == InvalidArguments.__name__:
        return "invalid_arguments"
    if isinstance(exc, WorkerLostError):
        return "worker_lost"
    if isinstance(exc, DeliveryLimitExceeded):
        return "delivery_limit"
    if isinstance(exc, TimeLimitExceeded | SoftTimeLimitExceeded):
        return "time_limit"
    transient = tuple(getattr(task, "autoretry_for", ()) or ())
    if transient and isinstance(exc, transient):
        return "retries_exhausted"
    return "failed"


def _exception_name(exc: BaseException) -> str:
    # Celery wraps exceptions that do not survive a pickle round trip (InvalidArguments takes
    # two arguments) in UnpickleableExceptionWrapper, which keeps the original class name.
    return str(getattr(exc, "exc_cls_name", None) or type(exc).__name__)


def _exception_text(exc: BaseException, name: str | None = None) -> str:
    message = getattr(exc, "exc_msg", None) if hasattr(exc, "exc_cls_name") else None
    return f"{name or _exception_name(exc)}: {message if message is not None else exc}"


@task_failure.connect
def _dead_letter_failed_job(
    sender: Task | None = None,
    task_id: str | None = None,
    exception: BaseException | None = None,
    args: Any = None,
    kwargs: Any = None,
    einfo: Any = None,
    **_: Any,
) -> None:
    # task_failure fires once per terminal failure: in the pool for an exception (after the last
    # retry), in the worker's main process for a lost process or a hard time limit. A retry is
    # not a failure, so nothing that will still run again lands here.
    if sender is None or task_id is None or exception is None:
        return
    # Celery replaces an exception that does not pickle (InvalidArguments takes two arguments)
    # by its nearest picklable base class (ValueError); einfo.type is still the original class.
    exc_type = getattr(einfo, "type", None)
    name = exc_type.__name__ if isinstance(exc_type, type) else _exception_name(exception)
    request = sender.request
    delivery = getattr(request, "delivery_info", None) or {}
    trace = getattr(einfo, "traceback", None) or "".join(
        traceback_module.format_exception(exception)
    )
    try:
        dead_letter(
            {
                "id": task_id,
                "job": sender.name,
                "queue": delivery.get("routing_key") or getattr(sender, "queue", None),
                "reason": failure_reason(sender, exception, name),
                "error": _exception_text(exception, name),
                "traceback": trace,
                "args": list(args or []),
                "kwargs": dict(kwargs or {}),
                "retries": getattr(request, "retries", 0) or 0,
                "worker": getattr(request, "hostname", None),
                # Fire and forget stays so when the job is retried from here.
                "ignore_result": bool(getattr(request, "ignore_result", False)),
            }
        )
    except Exception:  # never turn a failure into a crash of the pool or the consumer
        log.exception("could not dead-letter job %s", task_id)
