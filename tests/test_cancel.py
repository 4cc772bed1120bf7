"""Cancellation that holds: stored in Redis, it reaches every worker, online or not.

Real redis-servers and real ``jobq worker`` processes. A cancelled queued job never runs, a
running one stops within one lease-renewal interval in both pools, a cancel survives a Redis
restart with the append-only file, a pipeline's remaining steps do not run, and ``jobq cancel``
refuses bad input with one line and exit status 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from celery.exceptions import TaskRevokedError

from ops.redis_server import start_redis
from producers import submit, submit_many
from producers.cancel import cancel
from tests.waiting import wait_until
from workers.stores.cancels import store_cancels
from workers.stores.job_records import read_records

RENEW_S = 1.0  # the workers' JOBQ_LEASE_RENEW_INTERVAL in the running-job tests
SLACK_S = 15.0  # a loaded 2-core machine: start-up of the kill, the record write


def jobq(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ops", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def states(ids: list[str]) -> list[str | None]:
    return [record.get("state") for record in read_records(ids)]


def test_cancelled_queued_jobs_never_run_the_others_do(redis_client: Any, workers: Any) -> None:
    handles = submit_many("io_wait", [{"ms": 1}] * 1000)
    ids = [handle.id for handle in handles]
    cancelled = set(cancel(ids[::10]))  # no worker is online yet
    assert len(cancelled) == 100
    workers("io", concurrency=20)
    workers("io", concurrency=20)

    def all_ended() -> bool:
        return all(states(ids))

    wait_until(all_ended, timeout=90, message="not every job ended or was dropped")
    records = read_records(ids)
    for job_id, record in zip(ids, records, strict=True):
        if job_id in cancelled:
            assert record["state"] == "REVOKED", record
            assert record["cancelled_by"], record
            assert not record.get("started_at"), f"cancelled job {job_id} started"
        else:
            assert record["state"] == "SUCCESS", record
    assert redis_client.llen("io") == 0
    assert redis_client.hlen("unacked") == 0  # nothing left to come back with a lease


@pytest.mark.parametrize(
    ("pool", "job", "follow"),
    [("io", "io_wait", "io_wait"), ("cpu", "cpu_spin", "cpu_spin")],
)
def test_running_job_stops_within_one_renewal_interval(
    redis_client: Any, workers: Any, pool: str, job: str, follow: str
) -> None:
    # One worker slot, a lease renewed every second. The cancel is written to Redis only (no
    # broadcast): what a worker that missed `jobq cancel`'s broadcast relies on.
    workers(pool, concurrency=1, env={"JOBQ_LEASE_RENEW_INTERVAL": str(RENEW_S)})
    handle = submit(job, ms=60_000)
    wait_until(lambda: handle.state == "STARTED" or redis_client.hlen("unacked"), timeout=30)
    wait_until(lambda: redis_client.llen(pool) == 0, timeout=30)
    store_cancels(redis_client, [handle.id], who="test", expires=600)

    wait_until(
        lambda: states([handle.id]) == ["REVOKED"],
        timeout=RENEW_S + SLACK_S,
        message=f"the running {pool} job was not stopped within the renewal interval + slack",
    )
    (record,) = read_records([handle.id])
    assert record["cancelled_by"] == "test"
    assert handle.result.state == "REVOKED"  # not SUCCESS: it did not run to completion
    # Acknowledged (kombu flushes prefork acks on its next loop turn): no lease brings it back.
    wait_until(lambda: redis_client.hlen("unacked") == 0, timeout=10)
    # The worker keeps serving (prefork: a new child replaced the killed one).
    assert submit(follow, ms=10).get(timeout=30)["ms"] == 10
    assert redis_client.hlen("jobq:dead") == 0, "the cancelled job was dead-lettered"


@pytest.mark.parametrize(("pool", "job"), [("io", "io_wait"), ("cpu", "cpu_spin")])
def test_prefetched_job_cancelled_never_starts(
    redis_client: Any, workers: Any, pool: str, job: str
) -> None:
    env = {"JOBQ_LEASE_RENEW_INTERVAL": str(RENEW_S), "JOBQ_PREFETCH_MULTIPLIER": "2"}
    worker = workers(pool, concurrency=1, env=env)
    running = submit(job, ms=60_000)
    wait_until(lambda: redis_client.hlen("unacked") == 1, timeout=30)
    waiting = submit(job, ms=10)
    # Prefetched: out of the queue, held by the worker behind the running job.
    wait_until(
        lambda: redis_client.hlen("unacked") == 2 and redis_client.llen(pool) == 0, timeout=30
    )
    store_cancels(redis_client, [waiting.id], who="test", expires=600)  # no broadcast
    wait_until(
        lambda: f"job {waiting.id} cancelled" in worker.log_path.read_text(),
        timeout=RENEW_S + SLACK_S,
        message="the worker did not learn the cancel of its prefetched job",
    )
    store_cancels(redis_client, [running.id], who="test", expires=600)  # frees the slot
    wait_until(lambda: states([running.id, waiting.id]) == ["REVOKED"] * 2, timeout=30)
    (record,) = read_records([waiting.id])
    assert not record.get("started_at"), "the cancelled prefetched job started"
    assert waiting.result.state == "REVOKED"
    assert submit(job, ms=10).get(timeout=30)["ms"] == 10


def test_cli_cancel_stops_a_running_job_at_once(redis_client: Any, workers: Any) -> None:
    # A renewal interval far longer than the deadline: only the broadcast can be this quick.
    workers("io", concurrency=2, env={"JOBQ_LEASE_RENEW_INTERVAL": "25"})
    handle = submit("io_wait", ms=60_000)
    wait_until(lambda: redis_client.hlen("unacked"), timeout=30)
    done = jobq("cancel", handle.id)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "cancelled 1 job"
    wait_until(lambda: states([handle.id]) == ["REVOKED"], timeout=15)
    with pytest.raises(TaskRevokedError):
        handle.get(timeout=5)
    shown = jobq("show", handle.id)
    assert "REVOKED" in shown.stdout, shown.stdout
    assert "cancelled" in shown.stdout, shown.stdout


def test_cancel_survives_a_redis_restart_with_aof(tmp_path: Path, workers: Any) -> None:
    own = start_redis(data_dir=tmp_path / "redis", extra={"appendfsync": "always"})
    env = {"REDIS_URL": own.url}
    try:
        lines = "\n".join(json.dumps({"ms": 1}) for _ in range(20))
        submitted = subprocess.run(
            [sys.executable, "-m", "ops", "submit", "io_wait", "--file", "-", "--json"],
            input=lines,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **env},
        )
        assert submitted.returncode == 0, submitted.stderr
        ids = [json.loads(line)["id"] for line in submitted.stdout.splitlines() if line.strip()]
        assert len(ids) == 20
        done = jobq("cancel", *ids[:5], env=env)
        assert done.returncode == 0, done.stderr
        own.kill()  # a crash: only the append-only file keeps the cancels
        own.restart()
        workers("io", concurrency=5, env=env, ready=False)  # it answers pings on its own Redis
        client = own.client()

        def ended() -> list[str | None]:
            pipe = client.pipeline()
            for job_id in ids:
                pipe.hget(f"jobq:job:{job_id}", "state")
            found = pipe.execute()
            return found if all(found) else []

        found = wait_until(ended, timeout=60, message="jobs did not end after the restart")
        assert found[:5] == ["REVOKED"] * 5
        assert found[5:] == ["SUCCESS"] * 15
    finally:
        own.stop()


def test_cancelling_a_pipeline_stops_its_remaining_steps(
    redis_client: Any, workers: Any, local_site: Any
) -> None:
    handle = submit("fetch_and_analyze", url=local_site.url("/"))
    assert len(handle.steps) == 2
    assert handle.steps[-1] == handle.id
    # Only the I/O worker: the first step runs, the second waits in the cpu queue.
    workers("io", concurrency=2)
    wait_until(lambda: states(handle.steps[:1]) == ["SUCCESS"], timeout=30)
    wait_until(lambda: redis_client.llen("cpu") == 1, timeout=30)
    assert set(handle.cancel()) == {handle.steps[1]}  # the finished step keeps its outcome
    workers("cpu", concurrency=1)
    wait_until(lambda: states(handle.steps[1:]) == ["REVOKED"], timeout=30)
    assert redis_client.llen("cpu") == 0
    with pytest.raises(TaskRevokedError):
        handle.get(timeout=5)


def test_cancelling_a_pipeline_during_its_first_step_runs_no_later_step(
    redis_client: Any, workers: Any, local_site: Any
) -> None:
    workers("io", concurrency=2)
    workers("cpu", concurrency=1)
    handle = submit("fetch_and_analyze", url=local_site.url("/delay/60000"), timeout=90)
    first, last = handle.steps
    wait_until(lambda: redis_client.hlen("unacked") == 1, timeout=30)  # the fetch is running
    assert set(handle.cancel()) == {first, last}
    wait_until(lambda: states([first]) == ["REVOKED"], timeout=15)
    with pytest.raises(TaskRevokedError):
        handle.get(timeout=5)
    # Nothing of the second step: no message, no record of a run.
    assert redis_client.llen("cpu") == 0
    assert states([last]) == [None]


@pytest.mark.integration
def test_cli_refuses_bad_input_with_one_line_and_exit_2(redis_client: Any) -> None:
    for args in (
        ("cancel", "not-an-id"),
        ("cancel", "6F1C2A8E-1C3B-4C1E-9A57-0D4D4A8F0B1C"),  # not as workers spell ids
        ("cancel", "--job", "no_such_job", "--queued"),
        ("cancel", "--job", "io_wait"),  # --job without --queued
        ("cancel",),
    ):
        done = jobq(*args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, (args, done.stderr)
        assert done.stdout == "", (args, done.stdout)
    assert not redis_client.keys("jobq:cancel:*"), "a refused cancel stored something"


@pytest.mark.integration
def test_cli_cancel_of_a_pipeline_id_printed_by_submit_stops_its_later_step(
    redis_client: Any, local_site: Any
) -> None:
    # `jobq submit` prints a pipeline's last step id, which has no trace until the step before
    # it ends. Before: "unknown job id", exit 2, and the step ran.
    handle = submit("fetch_and_analyze", url=local_site.url("/page/1"))
    _first, last = handle.steps
    done = jobq("cancel", last)
    assert done.returncode == 0, done.stderr
    assert "no such job yet" in done.stderr
    assert redis_client.exists(f"jobq:cancel:{last}")


@pytest.mark.integration
def test_a_cancel_outlives_the_delay_of_the_latest_delayed_job(redis_client: Any) -> None:
    # A job due in a week, cancelled today, must still find its cancel when it comes due.
    from workers.settings import get_settings

    week = 7 * 86_400
    handle = submit("io_wait", ms=1, delay=week)
    cancel(handle)
    ttl = redis_client.ttl(f"jobq:cancel:{handle.id}")
    assert ttl >= week + get_settings().result_expires - 5


@pytest.mark.integration
def test_cli_cancels_every_queued_job_of_one_kind(redis_client: Any) -> None:
    waiting = submit_many("io_wait", [{"ms": 1}] * 30)
    other = submit("cpu_spin", ms=1)
    done = jobq("cancel", "--job", "io_wait", "--queued", "--json")
    assert done.returncode == 0, done.stderr
    assert set(json.loads(done.stdout)["cancelled"]) == {handle.id for handle in waiting}
    assert not redis_client.exists(f"jobq:cancel:{other.id}")


@pytest.mark.integration
def test_take_script_drops_at_most_1000_cancelled_messages_per_call(redis_client: Any) -> None:
    from workers import keys
    from workers.broker.take import TAKE

    def envelope(job_id: str) -> str:
        info = {"exchange": "", "routing_key": "q"}
        props = {"delivery_tag": f"tag-{job_id}", "delivery_info": info}
        return json.dumps({"headers": {"id": job_id, "task": "io_wait"}, "properties": props})

    cancelled = [f"c{i}" for i in range(1005)]
    # The queue pops from the right: 1005 cancelled messages first, then one to run.
    redis_client.lpush("q", *[envelope(job_id) for job_id in [*cancelled, "keep"]])
    store_cancels(redis_client, cancelled, who="test", expires=600)
    args = ["", 1, "1", keys.CANCEL_PREFIX, keys.RECORD_PREFIX, 600]

    def take() -> list[Any]:
        return TAKE(redis_client, keys=["unacked_index", "unacked", "q"], args=args)

    assert take() == []  # 1000 dropped, then it stops: the rest waits for the next take
    assert redis_client.llen("q") == 6
    reply = take()
    assert json.loads(reply[1])["headers"]["id"] == "keep"  # 5 more dropped, then one taken
    assert redis_client.llen("q") == 0
    assert redis_client.hget(keys.RECORD_PREFIX + "c1004", "state") == "REVOKED"
    assert redis_client.hlen("unacked") == 1
