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


def task_body(kwargs: dict[str, Any], args: list[Any] | tuple[Any, ...] = ()) -> bytes:
    """A protocol-2 JSON body: ``[args, kwargs, embed]``."""
    embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
    return json.dumps([list(args), kwargs, embed]).encode()


def task_envelope(
    job: str,
    kwargs: dict[str, Any],
    *,
    queue: str,
    job_id: str | None = None,
    args: list[Any] | tuple[Any, ...] = (),
) -> str:
    """A well-formed JSON task message, as any Celery client would send it."""
    return envelope(task_body(kwargs, args), queue=queue, headers=task_headers(job, job_id))


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


def signature_dict(job: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """A serialized, immutable Celery signature of ``job``: what canvas messages carry."""
    return {
        "task": job,
        "args": [],
        "kwargs": kwargs,
        "options": {},
        "subtask_type": None,
        "immutable": True,
        "chord_size": None,
    }


def celery_builtin_messages(
    sentinel_dir: str, *, queue: str, job: str = "write_file"
) -> dict[str, str]:
    """Envelopes calling Celery's built-in ``celery.*`` tasks, by task name.

    Each would make ``job`` create a file in ``sentinel_dir`` named after the built-in if it ran
    (``celery.map`` calls the job inline, ``celery.chord_unlock`` sends it, ...); those that take
    no job (``celery.accumulate``, ``celery.backend_cleanup``) must be refused all the same.
    The envelope's job id is ``builtin-<name>``.
    """

    def sig(name: str) -> dict[str, Any]:
        return signature_dict(job, {"path": f"{sentinel_dir}/{name}"})

    calls: dict[str, dict[str, Any]] = {
        "celery.map": {"task": sig("celery.map"), "it": [f"{sentinel_dir}/celery.map-inline"]},
        "celery.starmap": {"task": sig("celery.starmap"), "it": [[]]},
        "celery.chunks": {"task": sig("celery.chunks"), "it": [[]], "n": 1},
        "celery.chord_unlock": {
            "group_id": str(uuid.uuid4()),
            "callback": sig("celery.chord_unlock"),
            "result": [],
        },
        "celery.group": {
            "tasks": [sig("celery.group")],
            "result": [[str(uuid.uuid4()), None]],
            "group_id": str(uuid.uuid4()),
            "partial_args": [],
        },
        "celery.chord": {"header": [sig("celery.chord")], "body": sig("celery.chord-body")},
        "celery.chain": {},
        "celery.accumulate": {},
        "celery.backend_cleanup": {},
    }
    return {
        name: task_envelope(name, kwargs, queue=queue, job_id=f"builtin-{name}")
        for name, kwargs in calls.items()
    }
