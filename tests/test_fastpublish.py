"""The fast publishing path speaks Celery's protocol: real workers and Celery's own tools agree.

Messages built by producers/fastpublish.py (batched, pipelined LPUSH) must be indistinguishable
from ``app.send_task`` to a worker: same envelope, headers and properties, executed with the
right kwargs, results stored, ``task-sent`` events Celery's event receiver understands. The
worker side's batched task events (workers/features/task_events.py) must reach that receiver too.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any

import pytest
from celery.result import AsyncResult

from producers import submit_many
from producers.fastpublish import publish_many
from tests.waiting import wait_until
from workers.app import app
from workers.keys import SENT_HEADER
from workers.stores.probes import read_probe


def _queued(redis_client: Any, queue: str) -> list[dict[str, Any]]:
    """The messages waiting in ``queue``, oldest first (workers BRPOP from the right)."""
    return [json.loads(raw) for raw in reversed(redis_client.lrange(queue, 0, -1))]


def _body(message: dict[str, Any]) -> list[Any]:
    assert message["properties"]["body_encoding"] == "base64"
    return json.loads(base64.b64decode(message["body"]))


def test_a_fast_path_message_looks_like_one_from_send_task(redis_client):
    kwargs = {"ms": 5, "probe_name": None}
    before = time.time()
    sent = app.send_task("io_wait", kwargs=kwargs, queue="io")
    (fast_id,) = publish_many(app, "io_wait", "io", [kwargs])
    after = time.time()

    celery_message, fast_message = _queued(redis_client, "io")
    assert celery_message["headers"]["id"] == sent.id
    assert fast_message["headers"]["id"] == fast_id
    # Same envelope, same header and property names, same delivery info and encodings.
    assert fast_message.keys() == celery_message.keys()
    assert fast_message["headers"].keys() == celery_message["headers"].keys()
    assert fast_message["properties"].keys() == celery_message["properties"].keys()
    for field in ("content-type", "content-encoding"):
        assert fast_message[field] == celery_message[field]
    for prop in ("delivery_info", "priority", "body_encoding", "delivery_mode", "reply_to"):
        assert fast_message["properties"][prop] == celery_message["properties"][prop], prop
    assert fast_message["properties"]["correlation_id"] == fast_id
    same = (
        "lang",
        "task",
        "retries",
        "timelimit",
        "eta",
        "expires",
        "group",
        "parent_id",
        "argsrepr",
        "kwargsrepr",
        "origin",
        "ignore_result",
        "stamps",
    )
    for header in same:
        assert fast_message["headers"][header] == celery_message["headers"][header], header
    assert fast_message["headers"]["root_id"] == fast_id
    # The send time, which the worker's wait-time figures start from: stamped when sent, on
    # both paths, in order.
    celery_sent, fast_sent = (m["headers"][SENT_HEADER] for m in (celery_message, fast_message))
    assert before <= celery_sent <= fast_sent <= after
    # The body: [args, kwargs, embed], identical.
    assert _body(fast_message) == _body(celery_message)


def test_fast_path_jobs_run_on_a_real_worker_with_their_kwargs_and_results(workers):
    workers("io", concurrency=20)

    ids = publish_many(app, "io_wait", "io", [{"ms": ms, "probe_name": None} for ms in range(10)])
    handles = submit_many("io_wait", [{"ms": 20 + ms} for ms in range(5)])

    results = [AsyncResult(job_id, app=app).get(timeout=30) for job_id in ids]
    assert [result["ms"] for result in results] == list(range(10))
    assert [handle.get(timeout=30)["ms"] for handle in handles] == [20, 21, 22, 23, 24]
    assert {handle.state for handle in handles} == {"SUCCESS"}
    assert len(set(ids) | {h.id for h in handles}) == 15  # every job its own id


def test_submit_many_refuses_a_bad_item_and_sends_nothing(redis_client):
    from workers.registry.schema import InvalidArguments

    with pytest.raises(InvalidArguments, match="item 1"):
        submit_many("io_wait", [{"ms": 1}, {"ms": "soon"}])
    assert redis_client.llen("io") == 0


def test_fire_and_forget_jobs_run_but_store_no_result(workers, redis_client):
    workers("io", concurrency=10)

    ids = publish_many(
        app, "io_wait", "io", [{"ms": 1, "probe_name": "ff"}] * 4, ignore_result=True
    )
    (kept,) = publish_many(app, "io_wait", "io", [{"ms": 1, "probe_name": "ff"}])

    AsyncResult(kept, app=app).get(timeout=30)
    wait_until(lambda: len(read_probe("ff")["visits"]) == 5, timeout=30, message="5 runs")
    assert redis_client.exists(f"celery-task-meta-{kept}")
    assert not any(redis_client.exists(f"celery-task-meta-{job_id}") for job_id in ids)


def _capture_events(types: set[str], wanted: int) -> tuple[threading.Thread, list[dict[str, Any]]]:
    """Celery's own event receiver (what Flower uses), capturing in a thread."""
    seen: list[dict[str, Any]] = []

    def keep(event: dict[str, Any]) -> None:
        if event["type"] in types:
            seen.append(event)

    def listen() -> None:
        with app.connection_for_read() as connection:
            receiver = app.events.Receiver(connection, handlers={"*": keep})
            try:
                for _ in receiver.itercapture(limit=None, timeout=30, wakeup=False):
                    if len(seen) >= wanted:
                        return
            except (TimeoutError, OSError):
                return  # the test's own wait_until reports what is missing

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    return thread, seen


def test_task_sent_events_reach_celerys_event_receiver(redis_client):
    thread, seen = _capture_events({"task-sent"}, wanted=3)
    wait_until(lambda: redis_client.pubsub_numpat() > 0, timeout=10, message="receiver listens")

    ids = publish_many(app, "io_wait", "io", [{"ms": ms, "probe_name": None} for ms in (1, 2, 3)])

    wait_until(lambda: len(seen) >= 3, timeout=20, message="3 task-sent events")
    assert [event["uuid"] for event in seen] == ids
    assert {event["name"] for event in seen} == {"io_wait"}
    assert {event["queue"] for event in seen} == {"io"}
    assert seen[0]["kwargs"] == "{'ms': 1, 'probe_name': None}"
    thread.join(timeout=35)


def test_gevent_workers_batched_task_events_reach_celerys_event_receiver(workers, redis_client):
    workers("io", concurrency=10)
    # The worker's own broadcast (pidbox) subscription is a pattern too: wait for one more, or
    # the jobs could be received before the test's receiver listens.
    before = redis_client.pubsub_numpat()
    thread, seen = _capture_events({"task-received", "task-started", "task-succeeded"}, 15)
    wait_until(lambda: redis_client.pubsub_numpat() > before, timeout=10, message="no receiver")

    ids = publish_many(app, "io_wait", "io", [{"ms": 1, "probe_name": None}] * 5)

    wait_until(lambda: len(seen) >= 15, timeout=30, message="received/started/succeeded x5")
    for kind in ("task-received", "task-started", "task-succeeded"):
        assert sorted(e["uuid"] for e in seen if e["type"] == kind) == sorted(ids), kind
    thread.join(timeout=35)
