"""Fast publishing: Celery protocol-2 messages built in batches and sent with pipelined LPUSH.

``app.send_task`` costs about 0.5–0.6 ms of producer CPU per job (routing, signals, a kombu
``Producer.publish`` round trip per message, a result-backend subscription, a separate PUBLISH
for the ``task-sent`` event). For a batch, almost all of that is the same work repeated. This
module builds exactly the envelope kombu's Redis transport would LPUSH (JSON, base64 body,
``headers``/``properties`` including ``delivery_info``, ``priority``, ``body_encoding`` and
``delivery_tag``) and the ``task-sent`` event Celery would PUBLISH, and sends a whole batch in
one Redis pipeline. Any Celery worker consumes these messages; nothing on the worker side knows
or cares how they were published (tests/test_fastpublish.py proves it against a real worker).

Only plain jobs go this way. Canvases (chains, chords) keep using ``apply_async``: they carry
callbacks and parent/root links that Celery builds for us.

Example::

    from producers.fastpublish import publish_many

    ids = publish_many(app, "io_wait", "io", [{"ms": 10}] * 1000)
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from itertools import islice
from typing import Any

from celery import Celery
from celery.utils.nodenames import anon_nodename
from celery.utils.saferepr import saferepr
from celery.utils.time import utcoffset
from kombu.utils.json import dumps as kombu_dumps

from producers.outage import ride_out
from workers.broker.enqueue_once import current_once
from workers.broker.schedule import current_schedule
from workers.keys import CORRELATION_HEADER, SENT_HEADER

# Messages per Redis pipeline: big enough that round trips vanish, small enough that one batch
# never holds much memory or blocks Redis for long (~1 ms of server time per 1 000 LPUSHes).
PIPELINE_SIZE = 1000
# Celery's own defaults for the repr headers (celery/app/amqp.py ``argsrepr_maxsize``).
REPR_MAXSIZE = 1024
EVENT_EXCHANGE = "celeryev"
EVENT_ROUTING_KEY = "task.sent"
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def _short_repr(value: Any) -> str:
    # saferepr is what Celery uses, but it walks the object in Python; for the common small,
    # JSON-shaped arguments plain repr gives the same text ~10x faster.
    text = repr(value)
    return text if len(text) <= REPR_MAXSIZE else saferepr(value, REPR_MAXSIZE)


def task_message(
    name: str,
    kwargs: Mapping[str, Any],
    *,
    queue: str,
    task_id: str | None = None,
    args: tuple[Any, ...] | list[Any] = (),
    origin: str,
    reply_to: str,
    priority: int = 0,
    sent_at: float | None = None,
    ignore_result: bool | None = None,
    correlation_id: str | None = None,
    parent_id: str | None = None,
    root_id: str | None = None,
) -> dict[str, Any]:
    """The envelope ``app.send_task(name, args, kwargs, queue=queue)`` would LPUSH, as a dict.

    Mirrors ``celery.app.amqp.AMQP.as_task_v2`` (headers, body ``[args, kwargs, embed]``) and
    kombu's ``Channel.prepare_message`` + ``_inplace_augment_message`` (properties).
    """
    task_id = task_id or str(uuid.uuid4())
    body = kombu_dumps([list(args), dict(kwargs), _EMBED])
    headers = {
        "lang": "py",
        "task": name,
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        # A job submitted from inside a job is its child, in its pipeline's tree (as send_task).
        "root_id": root_id or task_id,
        "parent_id": parent_id,
        "argsrepr": _short_repr(tuple(args)),
        "kwargsrepr": _short_repr(dict(kwargs)),
        "origin": origin,
        # None: the task's own setting; True: the worker stores no result (fire and forget).
        "ignore_result": ignore_result,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
        SENT_HEADER: sent_at if sent_at is not None else time.time(),
    }
    if correlation_id:
        headers[CORRELATION_HEADER] = correlation_id
    return {
        "body": base64.b64encode(body.encode("utf-8")).decode("ascii"),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {
            "correlation_id": task_id,
            "reply_to": reply_to,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": priority,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }


def sent_event(app: Celery, message: dict[str, Any], *, hostname: str) -> dict[str, Any]:
    """The ``task-sent`` event envelope Celery publishes for ``message`` (``task_send_sent_event``).

    Same fields as ``EventDispatcher.publish`` fills in, so Flower shows the job as soon as it is
    queued, exactly as for a job sent with ``apply_async``.
    """
    headers = message["headers"]
    queue = message["properties"]["delivery_info"]["routing_key"]
    event = {
        "hostname": hostname,
        "utcoffset": utcoffset(),
        "pid": os.getpid(),
        "clock": app.clock.forward(),
        "uuid": headers["id"],
        "root_id": headers["root_id"],
        "parent_id": headers["parent_id"],
        "name": headers["task"],
        "args": headers["argsrepr"],
        "kwargs": headers["kwargsrepr"],
        "retries": 0,
        "eta": None,
        "expires": None,
        "queue": queue,
        "exchange": "",
        "routing_key": queue,
        "timestamp": time.time(),
        "type": "task-sent",
    }
    return {
        "body": base64.b64encode(json.dumps(event).encode("utf-8")).decode("ascii"),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"hostname": hostname},
        "properties": {
            "delivery_mode": 1,
            "delivery_info": {"exchange": EVENT_EXCHANGE, "routing_key": EVENT_ROUTING_KEY},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def publish_many(
    app: Celery,
    name: str,
    queue: str,
    batch: Iterable[Mapping[str, Any]],
    *,
    send_sent_event: bool | None = None,
    pipeline_size: int = PIPELINE_SIZE,
    ignore_result: bool | None = None,
    correlation_id: str | None = None,
    parent_id: str | None = None,
    root_id: str | None = None,
) -> list[str]:
    """Enqueue one job per kwargs mapping in ``batch``; return the task ids, in order.

    Each chunk of ``pipeline_size`` messages (plus their ``task-sent`` events) is one Redis
    round trip. When this returns, Redis has accepted every message. ``send_sent_event``
    defaults to the app's ``task_send_sent_event``. ``ignore_result=True`` is fire and forget:
    the worker writes no result (Celery honours the per-message header), which saves it a GET
    and a SET+PUBLISH round trip per job.
    """
    if send_sent_event is None:
        send_sent_event = bool(app.conf.task_send_sent_event)
    origin = hostname = anon_nodename()
    reply_to = app.thread_oid
    ids: list[str] = []
    with app.producer_or_acquire() as producer:
        # kombu's Redis channel knows the queue key for a priority and the event channel name
        # (its fanout key prefix includes the database number), so we ask it rather than
        # re-deriving kombu's key layout here.
        # Opening the channel connects: retried like the publishes below.
        channel = ride_out(lambda: producer.channel)
        queue_key = channel._q_for_pri(queue, 0)
        event_topic = channel._get_publish_topic(EVENT_EXCHANGE, EVENT_ROUTING_KEY)
        schedule = current_schedule()  # a delayed submit: stored until due, sent "then"
        for chunk in _chunks(batch, pipeline_size):
            sent_at = schedule.due_estimate() if schedule is not None else time.time()
            messages = [
                task_message(
                    name,
                    kwargs,
                    queue=queue,
                    origin=origin,
                    reply_to=reply_to,
                    sent_at=sent_at,
                    ignore_result=ignore_result,
                    correlation_id=correlation_id,
                    parent_id=parent_id,
                    root_id=root_id,
                )
                for kwargs in chunk
            ]
            bodies = [json.dumps(message) for message in messages]
            events = [
                json.dumps(sent_event(app, message, hostname=hostname))
                for message in (messages if send_sent_event else [])
            ]

            def send(
                bodies: list[str] = bodies,
                events: list[str] = events,
                messages: list[dict[str, Any]] = messages,
            ) -> None:
                # Built afresh on every attempt: redis-py empties a pipeline that failed.
                pipe = channel.client.pipeline(transaction=False)
                once = current_once()
                if schedule is not None:
                    # Delayed (workers/broker/schedule.py): the same messages, in the queue's
                    # scheduled set until due; with a key, recorded by the same script.
                    schedule.queue_store(pipe, queue, messages, bodies, once)
                elif once is not None:
                    # A submit with an idempotency key: the key is recorded by the push itself,
                    # so a retry of a push whose reply was lost pushes nothing.
                    (message,) = messages
                    once.queue_push(pipe, queue_key, message, bodies[0])
                else:
                    # One LPUSH with many values keeps the list order of one-by-one LPUSHes
                    # (each value is pushed in turn to the head), so workers still take jobs in
                    # submission order. Redis applies it whole or not at all: a retry after a
                    # refused connection never sends half a chunk twice.
                    pipe.lpush(queue_key, *bodies)
                for event in events:
                    pipe.publish(event_topic, event)
                replies = pipe.execute()
                if once is not None:
                    once.settle(replies[0])  # the push's or the schedule's reply, alike

            ride_out(send)
            ids.extend(message["headers"]["id"] for message in messages)
    return ids
