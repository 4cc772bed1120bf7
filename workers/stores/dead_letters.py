"""The dead-letter store: jobs that failed for good, and messages that were refused.

A job ends up here when it raised an error that is not a declared transient one, exhausted its
retries, hit its hard time limit, kept killing its worker process, or had arguments that fail
its schema. A message that could not be a job at all (pickle, not JSON, no task header, unknown
job name) is kept here too, with its raw body, instead of being dropped
(workers/broker/consumer.py). Failed jobs are classified and stored by
:mod:`workers.features.dead_letters`; ``jobq dead retry`` re-submits through
:mod:`producers.dead_letters`.
Nothing here expires with time: ``jobq dead purge`` removes entries. The store is capped at
``JOBQ_DEAD_LETTER_MAX`` entries (100 000): past it the oldest are dropped, so a flood of bad
messages cannot fill Redis.

Storage: one Redis hash ``jobq:dead`` (id -> JSON entry) and a sorted set ``jobq:dead:index``
(id by time), so listing is ordered and ``show``/``retry`` by id are O(1).

Example::

    >>> [entry["reason"] for entry in list_dead(limit=5)]
    ['failed', 'unknown_job']
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from workers.keys import DEAD_INDEX_SUFFIX
from workers.logsafe import one_line
from workers.settings import get_settings
from workers.stores.client import get_redis
from workers.stores.scripts import LuaScript

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


STORE = LuaScript(__package__, "store_dead_letter.lua")


class DeadLetterNotFound(LookupError):
    """No dead letter with that id."""


class NotRetryable(ValueError):
    """A dead letter that cannot be re-submitted (e.g. a refused pickle message)."""


def _keys() -> tuple[str, str]:
    key = get_settings().dead_letter_key
    return key, key + DEAD_INDEX_SUFFIX


def dead_letter(entry: dict[str, Any]) -> str:
    """Store ``entry`` (needs ``reason``; ``id`` is generated if missing); return its id."""
    entry = {"dead_at": time.time(), **entry}
    entry.setdefault("id", f"msg-{uuid.uuid4()}")
    body = entry.get("body")
    if isinstance(body, str) and len(body) > MAX_BODY_CHARS:
        entry["body"] = body[:MAX_BODY_CHARS] + "…(truncated)"
    data_key, index_key = _keys()
    limit = get_settings().dead_letter_max
    dropped = STORE(
        get_redis(),
        keys=[data_key, index_key],
        args=[entry["id"], json.dumps(entry, default=repr), entry["dead_at"], limit],
    )
    # The error may quote the message (kombu names its content type): one line, bounded; the
    # entry keeps it whole.
    error = one_line(str(entry.get("error", "")), limit=1000)
    log.error("dead-lettered %s (%s): %s", one_line(str(entry["id"])), entry["reason"], error)
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


def is_dead(entry_id: str) -> bool:
    """Whether a dead letter with this id is stored."""
    return bool(get_redis().hexists(_keys()[0], entry_id))


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
