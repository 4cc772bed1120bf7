"""Raw queue messages, built by hand: what a foreign or malicious client could LPUSH into a queue.

kombu's Redis transport stores each message as a JSON envelope (``body`` base64-encoded, plus
``headers`` and ``properties``) in the queue's list; workers BRPOP from the right. These helpers
build such envelopes around arbitrary bodies, so the bad-input tests and ``jobq faults`` can
push a pickle payload, a truncated body or an unknown job name straight into ``io`` or ``cpu``.

Example::

    client.lpush("io", task_envelope("write_file", {"path": "/tmp/x"}, queue="io"))
    client.lpush("io", pickle_envelope("write_file", creates="/tmp/pwned", queue="io"))
    client.lpush("io", with_field(task_envelope("io_wait", {}, queue="io"), "root_id", {}))
"""

from __future__ import annotations

import base64
import json
import pickle
import uuid
from typing import Any


def envelope(
    body: bytes,
    *,
    queue: str,
    headers: dict[str, Any] | None,
    content_type: str = "application/json",
    content_encoding: str = "utf-8",
) -> str:
    """A kombu Redis-transport envelope around ``body`` (bytes, sent as is)."""
    return json.dumps(
        {
            "body": base64.b64encode(body).decode("ascii"),
            "content-encoding": content_encoding,
            "content-type": content_type,
            "headers": headers,
            "properties": {
                "correlation_id": (headers or {}).get("id", str(uuid.uuid4())),
                "reply_to": "",
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": queue},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
    )


def task_headers(job: str, job_id: str | None = None) -> dict[str, Any]:
    """Celery protocol-2 headers for ``job``."""
    job_id = job_id or str(uuid.uuid4())
    return {
        "lang": "py",
        "task": job,
        "id": job_id,
        "root_id": job_id,
        "parent_id": None,
        "group": None,
        "retries": 0,
        "eta": None,
        "expires": None,
        "timelimit": [None, None],
        "argsrepr": "()",
        "kwargsrepr": "{}",
        "origin": "hand-built",
    }


def task_body(kwargs: dict[str, Any]) -> bytes:
    """A protocol-2 JSON body: ``[args, kwargs, embed]``."""
    embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
    return json.dumps([[], kwargs, embed]).encode()


def task_envelope(
    job: str, kwargs: dict[str, Any], *, queue: str, job_id: str | None = None
) -> str:
    """A well-formed JSON task message, as any Celery client would send it."""
    return envelope(task_body(kwargs), queue=queue, headers=task_headers(job, job_id))


class _CreatesFile:
    """Unpickling this object creates a file: proof that a pickle was (or was not) loaded."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (self.path, "w"))


def pickle_envelope(job: str, *, creates: str, queue: str, job_id: str | None = None) -> str:
    """A pickle task message whose body, if ever unpickled, creates the file ``creates``."""
    body = pickle.dumps(((), {"path": creates, "payload": _CreatesFile(creates)}, {}))
    return envelope(
        body,
        queue=queue,
        headers=task_headers(job, job_id),
        content_type="application/x-python-serialize",
        content_encoding="binary",
    )


def with_field(message: str, field: str, value: Any) -> str:
    """``message`` (an envelope) with one header, or its ``routing_key``, set to ``value``.

    For messages a client got wrong: ``with_field(m, "jobq_sent_at", "x")``.
    """
    payload = json.loads(message)
    if field == "routing_key":
        payload["properties"]["delivery_info"]["routing_key"] = value
    else:
        payload["headers"][field] = value
    return json.dumps(payload)
