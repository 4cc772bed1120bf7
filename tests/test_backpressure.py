"""Producers wait or fail at a queue's high-water mark; nothing is lost or duplicated."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import uuid
from pathlib import Path

import pytest

from ops.pausing import pause, resume
from ops.processes import jobq_argv
from ops.redis_server import start_redis
from producers import submit, submit_many
from producers.backpressure import AdmissionGate, QueueFull, WaterMarks, gated_publish
from producers.queues import queue_depths, unacked_count
from workers.settings import get_settings
from workers.stores.client import get_redis
from workers.stores.job_records import read_records
from workers.stores.probes import read_probe

from .waiting import wait_until


@pytest.fixture
def marks(monkeypatch):
    """The producer in this process uses an io high-water mark of 1 000, low-water 500."""
    monkeypatch.setenv("JOBQ_IO_HIGH_WATER", "1000")
    monkeypatch.setenv("JOBQ_IO_LOW_WATER", "500")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.fixture
def small_marks(monkeypatch):
    """The producer in this process uses an io high-water mark of 300, low-water 150."""
    monkeypatch.setenv("JOBQ_IO_HIGH_WATER", str(SMALL_HIGH))
    monkeypatch.setenv("JOBQ_IO_LOW_WATER", str(SMALL_HIGH // 2))
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


# Three marks' worth of jobs: the gate closes, then reopens below the low-water mark, again and
# again; a third of ``marks`` and of its 3000 jobs shows the same in a third of the time.
SMALL_HIGH = 300
JOBS = 3 * SMALL_HIGH


def io_depth() -> int:
    return queue_depths(get_redis(), ["io"])["io"]


def test_fail_fast_enqueues_at_most_the_mark_and_reports_the_rest(workers, marks):
    pause("io")
    workers("io", concurrency=20)  # started while paused: consumes nothing

    with pytest.raises(QueueFull) as caught:
        submit_many("io_wait", [{"ms": 1}] * 5000, on_full="fail")

    full = caught.value
    assert 0 < len(full.submitted) <= 1000
    assert full.not_submitted == 5000 - len(full.submitted)
    assert io_depth() == len(full.submitted) == len({h.id for h in full.submitted})
    assert unacked_count(get_redis()) == 0

    # The command line: exit status 3, the not-submitted lines counted, submitted ids printed.
    lines = "".join(json.dumps({"ms": 1}) + "\n" for _ in range(20))
    cli = subprocess.run(
        jobq_argv("submit", "io_wait", "--file", "-", "--on-full", "fail"),
        input=lines, capture_output=True, text=True, timeout=60, env=os.environ.copy(),
    )  # fmt: skip
    assert cli.returncode == 3, cli.stderr
    assert "20 not submitted (queue full)" in cli.stderr
    assert cli.stdout.strip() == ""
    assert io_depth() == len(full.submitted)
    resume("io")


def test_wait_blocks_then_resumes_below_the_low_water_mark_losing_nothing(workers, small_marks):
    # Job lengths spread over 0-99 ms: finishing all at once, 100 greenlets ack at once and
    # overflow kombu's 10-connection broker pool (MaxConnectionsError, a duplicate run after the
    # lease), a worker problem outside the gate that this test must not trip over.
    pause("io")
    workers("io", concurrency=100)
    probe = f"gate-{uuid.uuid4().hex}"
    outcome: dict = {}

    def produce() -> None:
        try:
            outcome["handles"] = submit_many(
                "io_wait", [{"ms": n % 100, "probe_name": probe} for n in range(JOBS)],
                on_full="wait", timeout=120,
            )  # fmt: skip
        except Exception as exc:  # reported below
            outcome["error"] = exc

    producer = threading.Thread(target=produce)
    producer.start()
    gate = AdmissionGate.for_queue("io")
    wait_until(gate.is_closed, timeout=30, message="the gate never closed")
    depth_while_blocked = io_depth()
    assert depth_while_blocked <= SMALL_HIGH
    assert producer.is_alive(), "the producer should be waiting for the queue to drain"

    resume("io")
    peak = depth_while_blocked
    while producer.is_alive():
        peak = max(peak, io_depth())
        producer.join(timeout=0.02)
    assert "error" not in outcome, outcome.get("error")
    handles = outcome["handles"]
    ids = [h.id for h in handles]
    assert len(ids) == len(set(ids)) == JOBS
    assert peak <= SMALL_HIGH

    def all_done() -> bool:
        return len(read_probe(probe)["visits"]) >= JOBS

    wait_until(all_done, timeout=90, interval=0.5, message="not every job ran")
    # A job's record is stored after its body has run (and its probe visit was counted).
    wait_until(
        lambda: all(r.get("state") == "SUCCESS" for r in read_records(ids)),
        timeout=30,
        interval=0.5,
        message="not every job finished with SUCCESS",
    )  # none lost
    assert len(read_probe(probe)["visits"]) == JOBS  # none ran twice


def test_producers_racing_for_the_last_room_never_overshoot(redis_client):
    # Four producers publish to a list nobody consumes; together they may never pass the mark.
    gate = AdmissionGate("io", WaterMarks(high=300, low=100))

    def publish(chunk: list[int]) -> list[int]:
        get_redis().lpush("io", *chunk)
        return chunk

    # (what went in, what did not) per producer: one may finish before the gate closes.
    outcomes: list[tuple[int, int]] = []

    def producer() -> None:
        try:
            sent = gated_publish(gate, list(range(200)), publish, on_full="fail", batch_size=7)
            outcomes.append((len(sent), 0))
        except QueueFull as exc:
            outcomes.append((len(exc.submitted), exc.not_submitted))

    threads = [threading.Thread(target=producer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    depth = io_depth()
    # Never above the mark; below it by at most one batch per other producer (a batch just
    # published and not yet released counts twice for a moment: the gate errs on the safe side).
    assert 300 - 3 * 7 <= depth <= 300
    assert len(outcomes) == 4
    assert sum(sent for sent, _ in outcomes) == depth  # every job reported is in the list
    assert sum(refused for _, refused in outcomes) == 4 * 200 - depth
    assert sum(1 for _, refused in outcomes if refused) >= 3  # the gate closed on the others


def fill_redis_leaving(client, *, room: int) -> None:
    """Append to a filler key until only ``room`` bytes are left below ``maxmemory``.

    In 64 KB pieces: one big SET would need its whole value in the query buffer, which counts
    against maxmemory itself.
    """
    while True:
        memory = client.info("memory")
        left = memory["maxmemory"] - memory["used_memory"]
        if left <= room:
            return
        client.append("filler", b"\0" * min(65_536, left - room))


@pytest.mark.integration
def test_a_full_redis_is_a_clear_producer_error(tmp_path: Path):
    server = start_redis(data_dir=tmp_path / "tiny", maxmemory="3mb")
    try:
        # Most of the 3 MB taken by a filler key, so a few hundred jobs fill the rest rather
        # than thousands (each ~2.2 KB; the CLI sends batches of 500): the first batch fits,
        # the second finds Redis full.
        fill_redis_leaving(server.client(), room=1_600_000)
        env = {**os.environ, "REDIS_URL": server.url}
        lines = "".join(json.dumps({"ms": 1, "probe_name": "x" * 200}) + "\n" for _ in range(2000))
        cli = subprocess.run(
            jobq_argv("submit", "io_wait", "--file", "-"),
            input=lines, capture_output=True, text=True, timeout=120, env=env,
        )  # fmt: skip
        assert cli.returncode == 3, cli.stderr[-2000:]
        assert "Redis is full" in cli.stderr
        # What was reported as submitted is in Redis; nothing was evicted.
        reported = len(cli.stdout.split())
        client = server.client()
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        assert 0 < reported <= client.llen("io")
    finally:
        server.stop()


@pytest.mark.integration
@pytest.mark.parametrize("fast_paths", ["true", "false"])
def test_a_submit_into_an_already_full_redis_is_refused_not_left_waiting(
    tmp_path: Path, fast_paths: str
):
    # The first publish of a process declares its queue's binding (an SADD, refused when Redis
    # is full). Workers wait such a refusal out at start-up; a producer must report it. Before,
    # the stock path's `jobq submit` waited for memory forever.
    server = start_redis(data_dir=tmp_path / "full", maxmemory="3mb")
    try:
        fill_redis_leaving(server.client(), room=0)
        env = {**os.environ, "REDIS_URL": server.url, "JOBQ_FAST_PATHS": fast_paths}
        cli = subprocess.run(
            jobq_argv("submit", "io_wait", "ms=1"),
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
        assert cli.returncode == 3, cli.stderr[-2000:]
        assert "Redis is full" in cli.stderr
        assert server.client().llen("io") == 0
    finally:
        server.stop()


def test_a_full_redis_wrapped_by_kombu_is_a_refusal_not_an_outage():
    # Celery's send_task (the stock publish path) raises kombu's OperationalError from Redis's
    # OOM answer: that is Redis refusing, to report as "Redis is full", never to retry as if
    # Redis were unreachable.
    import redis
    from kombu.exceptions import OperationalError

    from producers.backpressure import is_redis_full
    from producers.outage import is_unreachable

    oom = redis.exceptions.OutOfMemoryError(
        "Command # 1 (LLEN io) of pipeline caused error: command not allowed when used memory "
        "> 'maxmemory'."
    )
    wrapped = OperationalError(str(oom))
    wrapped.__cause__ = oom  # what `raise OperationalError(...) from exc` leaves
    assert is_redis_full(wrapped)
    assert not is_unreachable(wrapped)
    refused = OperationalError("Error 111 connecting to 127.0.0.1:1. Connection refused.")
    assert is_unreachable(refused)
    assert not is_redis_full(refused)


def test_pipelines_keep_the_cpu_queue_under_its_mark(workers, local_site, monkeypatch):
    # Marks of the cpu queue: 10 / 5, for this producer and for the workers.
    cpu_marks = {"JOBQ_CPU_HIGH_WATER": "10", "JOBQ_CPU_LOW_WATER": "5"}
    for name, value in cpu_marks.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    pause("io")
    io = workers("io", concurrency=20, env={**cpu_marks, "JOBQ_WORKER_GATE_WAIT": "300"})
    url = local_site.url("/page/1")

    handles = submit_many("fetch_and_analyze", [{"url": url}] * 20, on_full="fail")

    # The cpu queue fills up meanwhile: the fetched pages' next steps wait for room.
    submit_many("cpu_spin", [{"ms": 1}] * 10, on_full="fail")
    resume("io")
    wait_until(
        lambda: (
            queue_depths(get_redis(), ["cpu"])["cpu"] > 10
            or io.log_tail(200_000).count("waits for room in queue 'cpu'") >= len(handles)
        ),
        timeout=60,
        message="the fetches neither published nor waited: " + io.log_tail(3000),
    )
    assert queue_depths(get_redis(), ["cpu"])["cpu"] <= 10, io.log_tail(3000)
    # A pipeline is admitted against every queue it will touch, not only its first step's.
    with pytest.raises(QueueFull, match="'cpu'"):
        submit("fetch_and_analyze", url=url, on_full="fail")

    # Once the cpu queue drains, every pipeline finishes: nothing lost.
    workers("cpu", concurrency=2, env=cpu_marks)
    for handle in handles:
        assert handle.get(timeout=120)["words"] > 0
    get_settings.cache_clear()
