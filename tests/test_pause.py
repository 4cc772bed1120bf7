"""The kill switch: a paused pool takes no new jobs, producers keep working, resume restarts it."""

from __future__ import annotations

import time
from collections.abc import Callable

from click.testing import CliRunner

from ops.cli import main
from producers import submit_many
from producers.queues import queue_depths, unacked_count
from producers.status import collect_status
from workers.app import app
from workers.stores.client import get_redis
from workers.stores.pause_flags import is_paused

from .waiting import wait_until


def depth(queue: str) -> int:
    return queue_depths(get_redis(), [queue])[queue]


def holds_for(condition: Callable[[], bool], seconds: float) -> bool:
    """True if ``condition`` stays true for ``seconds`` (polled): how to show nothing happens."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not condition():
            return False
        time.sleep(0.05)
    return True


def consuming(node: str) -> set[str]:
    answers = app.control.inspect(destination=[node], timeout=2).active_queues() or {}
    return {queue["name"] for queue in answers.get(node, [])}


def test_pause_stops_consumption_producers_keep_working_resume_restarts_it(workers):
    cli = CliRunner()
    # Started side by side (each start-up is seconds), then each waited for.
    first = workers("io", concurrency=20, ready=False)
    cpu = workers("cpu", concurrency=1, ready=False)
    for worker in (first, cpu):
        worker.wait_ready(timeout=60)
    for handle in submit_many("io_wait", [{"ms": 1}] * 10):
        handle.get(timeout=30)

    paused = cli.invoke(main, ["pause", "io"])
    assert paused.exit_code == 0, paused.output
    assert "1 worker(s) stopped consuming" in paused.output
    assert is_paused("io")
    # A worker started while paused (its start-up overlaps the checks below; waited for later).
    late = workers("io", concurrency=20, ready=False)
    assert collect_status(timeout=2)["queues"]["io"]["paused"] is True
    assert "io" not in consuming(first.node_name)
    assert consuming(cpu.node_name) == {"cpu"}  # the other pool is untouched

    # Producers keep enqueueing; nothing is taken while paused, not even by a worker started now.
    waiting = submit_many("io_wait", [{"ms": 1}] * 50)
    late.wait_ready(timeout=60)
    assert "io" not in consuming(late.node_name)
    assert holds_for(lambda: depth("io") == 50 and unacked_count(get_redis()) == 0, 3.0)
    assert submit_many("cpu_spin", [{"ms": 1}])[0].get(timeout=30)["ms"] == 1

    resumed = cli.invoke(main, ["resume", "io"])
    assert resumed.exit_code == 0, resumed.output
    assert "2 worker(s) consuming again" in resumed.output
    assert not is_paused("io")
    for handle in waiting:
        assert handle.get(timeout=60)["ms"] == 1
    assert consuming(cpu.node_name) == {"cpu"}  # resume never makes a cpu worker take io jobs


def test_jobs_in_flight_finish_when_a_pool_is_paused(workers):
    workers("io", concurrency=10)
    running = submit_many("io_wait", [{"ms": 1500}] * 5)
    wait_until(lambda: unacked_count(get_redis()) == 5, timeout=30, message="jobs not started")

    assert CliRunner().invoke(main, ["pause", "io"]).exit_code == 0

    assert all(handle.get(timeout=30)["ms"] == 1500 for handle in running)
    assert CliRunner().invoke(main, ["pause", "gpu"]).exit_code == 2
