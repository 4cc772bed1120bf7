"""Group commit (workers/features/group_commit.py): batched writes and acks keep their promises.

A job is acknowledged only after its result and record are stored; when they cannot be stored
the acks are dropped (the job runs again after its lease) rather than sent alone. End to end, a
gevent worker leaves every result, every record and an empty ``unacked`` behind.
"""

from __future__ import annotations

import contextlib
import socket
import time
from typing import Any

import redis
from kombu import Connection, Exchange, Queue
from redis.backoff import NoBackoff
from redis.retry import Retry

from producers import submit_many
from producers.queues import unacked_count
from workers.features import group_commit as groupcommit
from workers.stores import job_stats as jobstats
from workers.stores.client import get_redis
from workers.stores.job_records import read_records

from .waiting import wait_until

QUEUE = Queue("gq", Exchange("gq", type="direct"), routing_key="gq")


def _deliver(conn: Connection, count: int) -> list[Any]:
    with conn.Producer() as producer:
        for number in range(count):
            producer.publish(
                {"n": number}, exchange=QUEUE.exchange, routing_key="gq", declare=[QUEUE]
            )
    received: list[Any] = []
    consumer = conn.Consumer(QUEUE, callbacks=[lambda body, message: received.append(message)])
    consumer.consume()
    deadline = time.monotonic() + 10
    while len(received) < count and time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            conn.drain_events(timeout=0.5)
    assert len(received) == count
    return received


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_acks_wait_for_the_batch_and_follow_its_writes(redis_server, redis_client):
    commit = groupcommit.GroupCommit(get_redis())
    with Connection(redis_server.url, transport="workers.broker.batched:RedisTransport") as conn:
        messages = _deliver(conn, 5)
        commit.start()
        try:
            for message in messages:
                commit.write(lambda pipe, n=message.payload["n"]: pipe.set(f"result:{n}", n))
                message.ack()
            # Queued, not sent: the bookkeeping is still in Redis, the results are not.
            assert redis_client.hlen("unacked") == 5
            assert redis_client.exists("result:0") == 0
            commit.flush()
        finally:
            commit.stop()
        assert [redis_client.get(f"result:{n}") for n in range(5)] == ["0", "1", "2", "3", "4"]
        assert redis_client.hlen("unacked") == 0
        assert redis_client.zcard("unacked_index") == 0
    assert groupcommit.active() is None


def test_acks_are_dropped_when_their_writes_cannot_be_stored(
    redis_server, redis_client, monkeypatch
):
    # flush()'s default retry window is bound when the module loads (30 s), so the short one is
    # passed to flush() itself; the constant, which stop() reads, is shortened too.
    monkeypatch.setattr(groupcommit, "RETRY_FOR_SECONDS", 0.3)
    # No retries inside redis-py (its default backs off ~4 s per command): the group commit's
    # own retry loop is what is tested, several times within its 0.3 s.
    unreachable = redis.Redis(
        port=_dead_port(), socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    commit = groupcommit.GroupCommit(unreachable)
    with Connection(redis_server.url, transport="workers.broker.batched:RedisTransport") as conn:
        messages = _deliver(conn, 3)
        commit.start()
        try:
            for message in messages:
                commit.write(lambda pipe: pipe.set("result", 1))
                message.ack()
            commit.flush(retry_for=0.3)
        finally:
            commit.stop()
        # No ack without its result: all three stay leased and will be delivered again.
        assert redis_client.hlen("unacked") == 3


def test_a_gevent_worker_stores_every_result_and_record_and_acks_every_job(workers):
    workers("io", concurrency=50)
    handles = submit_many("io_wait", [{"ms": 5}] * 300)

    results = [handle.get(timeout=60) for handle in handles]

    assert all(result["ms"] == 5 for result in results)
    # Whoever sees a result finds its record: they are written in one transaction.
    records = read_records(handle.id for handle in handles)
    assert all(record.get("state") == "SUCCESS" for record in records)
    wait_until(lambda: unacked_count(get_redis()) == 0, timeout=10, message="every job acked")
    # The statistics, written in the batches, count every job exactly once.
    client = get_redis()
    assert jobstats.read_totals(client)[("io_wait", "io", "SUCCESS")] == 300
    (run,) = [h for h in jobstats.read_histograms(client, "run") if h.job == "io_wait"]
    assert run.count == run.buckets["+Inf"] == 300
    assert run.sum >= 300 * 0.005
    assert len(jobstats.read_recent(client, "io", since=0)) == 300


def test_one_bad_write_neither_drops_its_batch_nor_keeps_its_job_leased(redis_server, redis_client):
    # Two jobs whose writes fail for reasons of their own: one raises while it is queued (a
    # statistic computed from a bad header), one holds a value redis-py cannot encode. Retrying
    # either would fail the same way at every lease; the three others must not pay for them.
    def raises(pipe: Any) -> None:
        pipe.set("result:bad", 1)
        raise TypeError("unsupported operand type(s) for -: 'float' and 'str'")

    def unencodable(pipe: Any) -> None:
        pipe.hset("record:bad", mapping={"root_id": {"a": 1}})

    commit = groupcommit.GroupCommit(get_redis())
    with Connection(redis_server.url, transport="workers.broker.batched:RedisTransport") as conn:
        messages = _deliver(conn, 5)
        commit.start()
        try:
            for n, message in enumerate(messages):
                if n == 1:
                    commit.write(raises, "job record bad-1")
                elif n == 3:
                    commit.write(unencodable, "job record bad-3")
                else:
                    commit.write(lambda pipe, n=n: pipe.set(f"result:{n}", n), f"result {n}")
                message.ack()
            commit.flush()
        finally:
            commit.stop()
        assert [redis_client.get(f"result:{n}") for n in (0, 2, 4)] == ["0", "2", "4"]
        # Nothing half-written by the failing ones, and every job acked: none runs again.
        assert redis_client.exists("result:bad", "record:bad") == 0
        assert redis_client.hlen("unacked") == 0
