"""jobq's Redis transport (workers/broker/batched.py) against a real redis-server and kombu.

Batched fetch must keep kombu's promises: every delivered message is in ``unacked`` in kombu's
own format (so a lease sweep can bring it back), the prefetch window is never exceeded, acks
remove the bookkeeping, items that are not envelopes are refused, not lost among good ones;
and a consumer whose window was full wakes up as soon as an ack frees a slot.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kombu import Connection, Exchange, Queue

from tests.waiting import wait_until
from workers.broker.envelopes import NOT_AN_ENVELOPE

TRANSPORT = "workers.broker.batched:RedisTransport"
QUEUE = Queue("tq", Exchange("tq", type="direct"), routing_key="tq")


@pytest.fixture
def connection(redis_server: Any, redis_client: Any) -> Iterator[Connection]:
    with Connection(redis_server.url, transport=TRANSPORT) as conn:
        yield conn


def publish(connection: Connection, count: int) -> None:
    with connection.Producer() as producer:
        for number in range(count):
            producer.publish(
                {"n": number}, exchange=QUEUE.exchange, routing_key="tq", declare=[QUEUE]
            )


def drain(connection: Connection, until: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not until() and time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            connection.drain_events(timeout=0.5)


def test_batched_fetch_records_each_delivery_as_kombu_does_and_keeps_the_window(
    connection: Connection, redis_client: Any
) -> None:
    publish(connection, 50)
    received: list[Any] = []
    with connection.Consumer(QUEUE, callbacks=[lambda body, message: received.append(message)]):
        connection.default_channel.basic_qos(0, 40, False)
        drain(connection, lambda: len(received) >= 40)
        with pytest.raises(TimeoutError):  # the window is full: nothing more is fetched
            connection.drain_events(timeout=1)

        assert sorted(m.payload["n"] for m in received) == list(range(40))
        assert redis_client.llen("tq") == 10
        unacked = redis_client.hgetall("unacked")
        assert redis_client.zcard("unacked_index") == 40
        assert set(unacked) == {m.delivery_tag for m in received}
        for message in received:
            # kombu's record: [envelope, exchange, routing_key], the envelope unchanged.
            envelope, exchange, routing_key = json.loads(unacked[message.delivery_tag])
            assert envelope == message._raw
            assert (exchange, routing_key) == ("tq", "tq")


def test_messages_for_no_ack_consumers_are_not_recorded(
    connection: Connection, redis_client: Any
) -> None:
    publish(connection, 10)
    received: list[Any] = []
    with connection.Consumer(
        QUEUE, no_ack=True, callbacks=[lambda body, message: received.append(body)]
    ):
        drain(connection, lambda: len(received) >= 10)
        assert sorted(body["n"] for body in received) == list(range(10))
        assert redis_client.hlen("unacked") == 0
        assert redis_client.zcard("unacked_index") == 0


def test_unacked_deliveries_return_after_their_lease_and_acks_clear_them(
    redis_server: Any, redis_client: Any
) -> None:
    # A lease of 1 s; the consumer stops sweeping (it would put them back itself) by leaving.
    options = {"visibility_timeout": 1}
    with Connection(redis_server.url, transport=TRANSPORT, transport_options=options) as conn:
        publish(conn, 20)
        received: list[Any] = []
        with conn.Consumer(QUEUE, callbacks=[lambda body, message: received.append(message)]):
            drain(conn, lambda: len(received) >= 20)
            for message in received[:5]:
                message.ack()
            assert redis_client.hlen("unacked") == 15
            assert redis_client.llen("tq") == 0
            # The consumer dies without a word: its deliveries stay in unacked.
            conn.default_channel.qos._delivered.clear()
    with Connection(redis_server.url, transport=TRANSPORT, transport_options=options) as sweeper:
        qos = sweeper.default_channel.qos
        wait_until(
            lambda: qos.restore_visible(num=100, interval=1) or redis_client.llen("tq") == 15,
            timeout=10,
            message="expired deliveries restored",
        )
    restored = sorted(json.loads(item)["body"] for item in redis_client.lrange("tq", 0, -1))
    assert len(restored) == 15
    assert len(set(restored)) == 15
    assert redis_client.hlen("unacked") == 0


def test_items_that_are_not_envelopes_are_refused_among_good_messages(
    connection: Connection, redis_client: Any
) -> None:
    publish(connection, 3)
    redis_client.lpush("tq", "not json at all", '{"json": "but no envelope"}')
    publish(connection, 3)
    received: list[Any] = []
    with connection.Consumer(
        QUEUE,
        callbacks=[lambda body, message: received.append(message)],
        accept=["json", NOT_AN_ENVELOPE],
    ):
        drain(connection, lambda: len(received) >= 8)
    kinds = [m.content_type for m in received]
    assert kinds.count(NOT_AN_ENVELOPE) == 2
    assert sorted(m.payload["n"] for m in received if m.content_type != NOT_AN_ENVELOPE) == [
        0,
        0,
        1,
        1,
        2,
        2,
    ]
    # Refused items are recorded like any delivery, so acking them leaves nothing behind.
    for message in received:
        message.ack()
    assert redis_client.hlen("unacked") == 0
    assert redis_client.zcard("unacked_index") == 0


def test_a_consumer_with_a_full_window_wakes_when_an_ack_frees_a_slot(
    connection: Connection,
) -> None:
    publish(connection, 10)
    received: list[Any] = []
    with connection.Consumer(QUEUE, callbacks=[lambda body, message: received.append(message)]):
        connection.default_channel.basic_qos(0, 5, False)
        drain(connection, lambda: len(received) >= 5)
        # Another thread acks while this one waits for messages, as a gevent job would.
        timer = threading.Timer(0.5, received[0].ack)
        timer.start()
        started = time.monotonic()
        connection.drain_events(timeout=60)  # kombu alone would sleep the whole minute here
        waited = time.monotonic() - started
        timer.join()
        drain(connection, lambda: len(received) >= 6)
    assert len(received) == 6
    assert waited < 30, f"the consumer slept {waited:.1f} s after the ack"
