"""Taking a message is one step: a Redis crash right after the wait loses no message.

kombu's BRPOP removes the message before the worker records it as unacked; a crash (of Redis,
or of the connection) between the two left it in no key at all. jobq's wait takes nothing
(workers/broker/take.py), so whatever happens after it, the message is in its queue or in
``unacked``. Real redis-server (its own, with ``appendfsync always``) and kombu's consumer.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection, Exchange, Queue

from ops.redis_server import start_redis

QUEUE = Queue("tq", Exchange("tq", type="direct"), routing_key="tq")
TRANSPORTS = {
    "fast-paths": "workers.broker.batched:RedisTransport",
    "stock": "workers.broker.envelopes:GuardedRedisTransport",
}
WAITS = ("BRPOP", "BLMOVE")  # kombu's wait, jobq's


@pytest.mark.integration
@pytest.mark.parametrize("transport", TRANSPORTS.values(), ids=TRANSPORTS.keys())
def test_a_redis_crash_right_after_the_wait_loses_no_message(tmp_path: Path, transport: str):
    server = start_redis(data_dir=tmp_path / "redis", extra={"appendfsync": "always"})
    try:
        received: list[Any] = []
        crashed: list[str] = []
        with Connection(server.url, transport=transport) as connection:
            with connection.Producer() as producer:
                producer.publish(
                    {"n": 1}, exchange=QUEUE.exchange, routing_key="tq", declare=[QUEUE]
                )
            client = connection.default_channel.client
            parse = client.parse_response

            def crash_after_the_wait(conn: Any, command: str, **options: Any) -> Any:
                reply = parse(conn, command, **options)
                if command in WAITS and reply and not crashed:
                    crashed.append(command)
                    server.kill()  # the wait has answered; nothing else reaches Redis
                return reply

            client.parse_response = crash_after_the_wait
            with (
                connection.Consumer(QUEUE, callbacks=[lambda body, m: received.append(body)]),
                contextlib.suppress(Exception),  # the take meets a dead Redis
            ):
                connection.drain_events(timeout=5)
        server.restart()
        after = server.client()
        assert crashed, "the wait never answered"
        assert not received
        assert after.llen("tq") + after.hlen("unacked") == 1, "the message is in no key at all"
    finally:
        server.stop()
