"""Prefetch is bounded: a worker never holds more than concurrency x multiplier unacked jobs.

Read from the broker itself: kombu keeps every delivered, unacknowledged message in the Redis
hash ``unacked`` (value: ``[message, exchange, routing_key]``) until the worker acks it.
"""

from __future__ import annotations

import json
import time
from collections import Counter

from click.testing import CliRunner

from ops.cli import main
from producers import submit_many
from producers.queues import UNACKED_HASH, queue_depths
from producers.status import collect_workers
from workers.stores.client import get_redis
from workers.stores.rate_limits import read_stats

from .waiting import wait_until


def held_per_queue() -> Counter[str]:
    """Unacknowledged messages right now, by the queue they came from."""
    return Counter(json.loads(raw)[2] for raw in get_redis().hvals(UNACKED_HASH))


def purge(*queues: str) -> None:
    client = get_redis()
    for queue in queues:
        client.delete(queue, *(f"{queue}\x06\x16{step}" for step in (3, 6, 9)))


def test_unacked_never_exceeds_concurrency_times_multiplier_with_10000_queued(workers):
    multiplier = {"JOBQ_PREFETCH_MULTIPLIER": "3"}
    io = workers("io", ready=False, concurrency=4, env=multiplier)
    cpu = workers("cpu", ready=False, concurrency=2, env=multiplier)
    # Slow enough that 4 greenlets finish well under 1 000 jobs while the test samples.
    submit_many("io_wait", [{"ms": 100}] * 10_000)
    submit_many("cpu_spin", [{"ms": 50}] * 10_000)
    io.wait_ready(timeout=60)
    cpu.wait_ready(timeout=60)
    bound = {"io": 4 * 3, "cpu": 2 * 3}

    peak: Counter[str] = Counter()
    samples = 0
    deadline = time.monotonic() + 4.0
    while time.monotonic() < deadline:
        held = held_per_queue()
        for queue, count in held.items():
            peak[queue] = max(peak[queue], count)
        samples += 1
        time.sleep(0.01)

    depths = queue_depths(get_redis(), ["io", "cpu"])
    assert depths["io"] > 9_000
    assert depths["cpu"] > 9_000  # still (nearly) 10 000 queued while we sampled
    assert samples > 100
    assert 0 < peak["io"] <= bound["io"], f"io worker held {peak['io']} > {bound['io']}"
    assert 0 < peak["cpu"] <= bound["cpu"], f"cpu worker held {peak['cpu']} > {bound['cpu']}"
    # `jobq status` shows the same per worker: what it runs and what it holds in reserve. Active
    # and reserved come from two separate broadcasts (jobs finish in between), so each is held
    # to its own bound; the sum's bound is the broker-side check above.
    concurrency = {"gevent": 4, "prefork": 2}
    for worker in collect_workers(timeout=2):
        pool_bound = bound["io" if worker["pool"] == "gevent" else "cpu"]
        assert worker["active"] <= concurrency[worker["pool"]]
        assert worker["reserved"] <= pool_bound
    purge("io", "cpu")  # the workers need not work through the backlog


def test_a_rate_limited_backlog_does_not_take_the_slots_of_other_jobs(workers, local_site):
    # Celery's own rate_limit keeps waiting jobs in the worker until they fill its prefetch
    # (measured: 38 of 40 slots) and everything else stalls. jobq parks them in Redis instead.
    worker = workers("io", concurrency=10)
    assert CliRunner().invoke(main, ["limits", "set", "io_wait", "2/s"]).exit_code == 0
    limited = submit_many("io_wait", [{"ms": 1}] * 200)
    wait_until(
        lambda: read_stats().get("io_wait", {}).get("parked", 0) >= 150,
        timeout=30,
        message="the rate-limited jobs were not parked in Redis",
    )

    others = submit_many(
        "fetch_url", [{"url": local_site.url(f"/page/{n}"), "timeout": 5} for n in range(20)]
    )
    peak = 0
    for handle in others:
        peak = max(peak, sum(held_per_queue().values()))
        assert handle.get(timeout=30)["status"] == 200

    assert peak <= 10
    done = sum(1 for handle in limited if handle.state == "SUCCESS")
    assert done < 100, "the limit should still be holding io_wait back"
    assert worker.alive()
    purge("io")
    get_redis().delete("jobq:delayed:io")
