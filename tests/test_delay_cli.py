"""Run later, at the edges: ``delay=``/``at=`` rules, ``jobq submit --delay/--at``, and where
delayed jobs show up (``jobq status``, the exporter). No worker runs: Redis shows what is where.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner

from ops.cli import main
from ops.exporter import JobqCollector
from ops.processes import jobq_argv
from producers import submit, submit_many
from producers.delay import InvalidSchedule, parse_at, parse_delay, plan_schedule
from tests.waiting import wait_until
from workers.keys import SCHEDULED_PREFIX, queue_lists
from workers.settings import get_settings
from workers.stores.admission import gate_keys
from workers.stores.scheduled import MOVE


def jobq(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        jobq_argv(*args), capture_output=True, text=True, timeout=60, env=dict(os.environ)
    )


def cli(*args: str) -> Any:
    """The real command, in this process (for outcomes that need no separate process)."""
    return CliRunner().invoke(main, list(args), env={"COLUMNS": "80"})


def redis_now(client: Any) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1_000_000


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90.0), ("90s", 90.0), ("5m", 300.0), ("2h", 7200.0), ("1.5m", 90.0), ("1d", 86400.0)],
)
def test_durations_parse(text: str, seconds: float) -> None:
    assert parse_delay(text) == seconds


@pytest.mark.parametrize("text", ["", "-5s", "abc", "5 parsecs", "1e3", "5m30s"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(InvalidSchedule, match="not a delay"):
        parse_delay(text)


def test_times_need_a_timezone() -> None:
    assert parse_at("2026-12-01T10:00:00Z") == datetime(2026, 12, 1, 10, tzinfo=UTC)
    assert (
        parse_at("2026-12-01T11:00:00+01:00").timestamp()
        == parse_at("2026-12-01T10:00Z").timestamp()
    )
    with pytest.raises(InvalidSchedule, match="no timezone"):
        parse_at("2026-12-01T10:00:00")
    with pytest.raises(InvalidSchedule, match="not a time"):
        parse_at("next tuesday")


def test_schedule_rules() -> None:
    assert plan_schedule() is None
    assert plan_schedule(delay=timedelta(minutes=2)).delay == 120.0  # type: ignore[union-attr]
    with pytest.raises(InvalidSchedule, match="not both"):
        plan_schedule(delay=1, at=datetime.now(UTC))
    with pytest.raises(InvalidSchedule, match="0 or more"):
        plan_schedule(delay=-1)
    with pytest.raises(InvalidSchedule, match="no timezone"):
        plan_schedule(at=datetime(2026, 12, 1, 10))


def test_bad_submits_send_nothing(redis_client: Any) -> None:
    for bad in (
        {"delay": -1},
        {"at": datetime(2026, 12, 1)},
        {"delay": 1, "at": datetime.now(UTC)},
    ):
        with pytest.raises(InvalidSchedule):
            submit("io_wait", ms=1, **bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidSchedule):
            submit_many("io_wait", [{"ms": 1}], **bad)  # type: ignore[arg-type]
    assert redis_client.dbsize() == 0


def test_a_delayed_job_waits_in_redis_and_status_and_exporter_count_it(redis_client: Any) -> None:
    before = redis_now(redis_client)
    handle = submit("io_wait", ms=1, delay=60)
    submit_many("cpu_spin", [{"ms": 1}] * 3, at=datetime.now(UTC) + timedelta(hours=1))
    # A pipeline's first step waits in its queue's set too.
    submit("fetch_and_analyze", url="http://127.0.0.1:9/", delay=60)
    scheduled = redis_client.zrange(SCHEDULED_PREFIX + "io", 0, -1, withscores=True)
    assert len(scheduled) == 2
    assert redis_client.llen("io") == 0
    assert redis_client.llen("cpu") == 0
    mine = next(score for member, score in scheduled if handle.id in member)
    assert before + 60 <= mine <= redis_now(redis_client) + 60  # from Redis's clock
    # The stored message is the one a worker receives: kombu's envelope of a Celery task.
    message = json.loads(next(member for member, _ in scheduled if handle.id in member))
    assert message["headers"]["task"] == "io_wait"
    assert message["properties"]["delivery_info"]["routing_key"] == "io"

    status = cli("status", "--json", "--timeout", "0.2")
    assert status.exit_code == 0, status.stderr
    queues = json.loads(status.stdout)["queues"]
    assert (queues["io"]["delayed"], queues["io"]["depth"]) == (2, 0)
    assert queues["cpu"]["delayed"] == 3

    delayed = {
        sample.labels["queue"]: sample.value
        for family in JobqCollector(redis_client).collect()
        if family.name == "jobq_queue_delayed"
        for sample in family.samples
    }
    assert delayed == {"io": 2.0, "cpu": 3.0}


def test_cli_delay_and_at(redis_client: Any) -> None:
    delayed = jobq("submit", "io_wait", "ms=1", "--delay", "90s")
    assert delayed.returncode == 0, delayed.stderr
    job_id = delayed.stdout.strip()
    ((member, score),) = redis_client.zrange(SCHEDULED_PREFIX + "io", 0, -1, withscores=True)
    assert job_id in member
    assert 80 < score - redis_now(redis_client) <= 90
    # A time in the past: due at once (the mover publishes it as soon as a worker runs).
    past = cli("submit", "cpu_spin", "ms=1", "--at", "2020-01-01T00:00:00Z")
    assert past.exit_code == 0, past.stderr
    ((_, score),) = redis_client.zrange(SCHEDULED_PREFIX + "cpu", 0, -1, withscores=True)
    assert score == parse_at("2020-01-01T00:00:00Z").timestamp()
    # A file of jobs, all delayed alike.
    lines = '{"ms": 1}\n{"ms": 2}\n'
    bulk = CliRunner().invoke(
        main, ["submit", "io_wait", "--file", "-", "--delay", "1h"], input=lines
    )
    assert bulk.exit_code == 0, bulk.stderr
    assert redis_client.zcard(SCHEDULED_PREFIX + "io") == 3
    assert redis_client.llen("io") == 0


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--delay", "soon"], "is not a delay"),
        (["--delay", "-5s"], "is not a delay"),
        (["--at", "2026-12-01T10:00:00"], "has no timezone"),
        (["--delay", "5s", "--at", "2026-12-01T10:00:00Z"], "--delay or --at, not both"),
    ],
)
def test_cli_bad_values_exit_2_with_one_line(
    redis_client: Any, options: list[str], says: str
) -> None:
    result = cli("submit", "io_wait", "ms=1", *options)
    assert result.exit_code == 2
    assert says in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert redis_client.dbsize() == 0


def test_due_jobs_move_earliest_first_and_only_into_the_room_below_the_mark(
    redis_client: Any,
) -> None:
    # The mover's script (every worker runs it) against a real Redis, with a mark of 3.
    def message(n: int, priority: int = 0) -> str:
        return json.dumps({"headers": {"id": f"job-{n}"}, "properties": {"priority": priority}})

    key = SCHEDULED_PREFIX + "io"
    keys = [key, *queue_lists("io"), *gate_keys("io")[:3]]
    now = redis_now(redis_client)
    redis_client.zadd(key, {message(n): now - 10 + n for n in range(5)})
    redis_client.zadd(key, {message(99): now + 3600})  # not due: stays whatever the room
    redis_client.lpush("io", "already queued")
    assert MOVE(redis_client, keys=keys, args=[200, 3, 1]) == [2, 3]
    assert redis_client.lrange("io", 0, -1) == [message(1), message(0), "already queued"]
    assert MOVE(redis_client, keys=keys, args=[200, 3, 1]) == [0, 3]  # full: they wait in Redis
    redis_client.rpop("io")
    assert MOVE(redis_client, keys=keys, args=[200, 3, 1]) == [1, 3]
    assert MOVE(redis_client, keys=keys, args=[200, -1, -1]) == [2, 5]  # no gate: all that are due
    assert redis_client.zrange(key, 0, -1) == [message(99)]
    # A message's priority picks its list, as kombu's Redis transport does.
    redis_client.zadd(key, {message(7, priority=6): now - 1})
    assert MOVE(redis_client, keys=keys, args=[200, -1, -1]) == [1, 6]
    assert redis_client.lrange(queue_lists("io")[2], 0, -1) == [message(7, priority=6)]


def test_due_jobs_count_parked_jobs_and_reservations_and_wait_while_the_gate_is_closed(
    redis_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The gate counts the lists, parked (rate-limited) jobs and producers' reservations; so
    # must the mover, or due jobs push the queue over its mark. Before: 8 parked, a mark of
    # 10, 20 due jobs: 10 moved, the gate's backlog 18.
    from workers.stores.scheduled import move_scheduled

    parked, closed, held, _ = gate_keys("io")
    now = redis_now(redis_client)
    redis_client.zadd(parked, {f"parked-{n}": now + 60 for n in range(8)})
    redis_client.hset(held, "producer-token", 1)
    redis_client.zadd(SCHEDULED_PREFIX + "io", {f"due-{n}": now - 1 for n in range(20)})
    monkeypatch.setenv("JOBQ_IO_HIGH_WATER", "10")
    monkeypatch.setenv("JOBQ_IO_LOW_WATER", "5")
    get_settings.cache_clear()
    try:
        assert move_scheduled("io", client=redis_client)[0] == 1  # 10 - 8 parked - 1 reserved
        redis_client.rpop("io")
        redis_client.set(closed, "1")  # producers wait for the low mark: 9 counted, over 5
        assert move_scheduled("io", client=redis_client)[0] == 0
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert redis_client.llen("io") == 0


def test_a_delayed_submits_key_holds_until_its_job_is_due_and_a_window_after(
    redis_client: Any,
) -> None:
    # The idempotency window starts when the job is due: resubmitting "nightly-42" before the
    # job has even run must not schedule it twice. Before: the key expired a window after the
    # submit, so a delay longer than the window ran the job twice.
    from workers.settings import get_settings

    week = 7 * 86_400
    handle = submit("io_wait", ms=1, delay=week, key="nightly-42")
    (key,) = [k for k in redis_client.keys("*nightly-42*")]
    assert redis_client.ttl(key) >= week + get_settings().idempotency_window - 5
    assert submit("io_wait", ms=1, delay=week, key="nightly-42").id == handle.id


def test_a_due_delayed_job_is_moved_by_a_worker_of_the_other_pool(workers, redis_client) -> None:
    # Only an io worker is up: the cpu job due now must still reach its queue (any live worker
    # publishes it); it then waits there for a cpu worker like any job submitted now.
    workers("io", concurrency=2)
    handle = submit("cpu_spin", ms=1, delay=1)
    wait_until(lambda: redis_client.llen("cpu") == 1, timeout=10, message="not moved to cpu")
    assert redis_client.zcard(SCHEDULED_PREFIX + "cpu") == 0
    workers("cpu", concurrency=1)
    assert handle.get(timeout=30) is not None
