"""Rate limits hold across every worker process: one schedule in Redis, not one per worker."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
from click.testing import CliRunner

from ops.cli import main
from ops.faults.lab import FAST_LEASE, lab
from ops.faults.messages import envelope, task_body, task_headers
from ops.faults.rates import busiest_second, paused_with_parked_jobs
from ops.pausing import pause, resume
from producers import submit_many
from workers.keys import DELAYED_PREFIX, SCHEDULE_PREFIX, TURN_PREFIX
from workers.registry.rates import by_host
from workers.stores.client import get_redis
from workers.stores.job_records import read_records
from workers.stores.rate_limits import InvalidRate, effective_rate, parse_rate, read_stats

from .waiting import wait_until


def observed_rate(finished: list[float]) -> tuple[float, float]:
    """(jobs per second, seconds observed) from completion timestamps."""
    times = sorted(finished)
    span = times[-1] - times[0]
    return (len(times) - 1) / span, span


def wait_for_records(ids: list[str], timeout: float) -> list[dict]:
    def all_done() -> list[dict] | None:
        records = read_records(ids)
        return records if all(r.get("state") == "SUCCESS" for r in records) else None

    try:
        return wait_until(all_done, timeout=timeout, interval=0.25)
    except pytest.fail.Exception:
        states = Counter(r.get("state") for r in read_records(ids))
        client = get_redis()
        parked = {q: client.zcard(DELAYED_PREFIX + q) for q in ("io", "cpu")}
        queued = {q: client.llen(q) for q in ("io", "cpu")}
        unfinished = [r for r in read_records(ids) if r.get("state") != "SUCCESS"]
        pytest.fail(
            f"jobs did not finish: states {dict(states)}, parked {parked}, queued {queued}, "
            f"unacked {client.hlen('unacked')}, unfinished {unfinished[:3]}"
        )


def test_three_io_workers_share_one_20_per_second_limit(workers):
    # Started in parallel, then waited for: three start-ups cost the time of one.
    started = [workers("io", ready=False, concurrency=50) for _ in range(3)]
    result = CliRunner().invoke(main, ["limits", "set", "io_wait", "20/s"])
    assert result.exit_code == 0, result.output
    for worker in started:
        worker.wait_ready(timeout=60)

    handles = submit_many("io_wait", [{"ms": 1}] * 130)
    records = wait_for_records([h.id for h in handles], timeout=60)

    rate, span = observed_rate([r["finished_at"] for r in records])
    assert span >= 5.0
    assert 17.0 <= rate <= 23.0, f"observed {rate:.1f} jobs/s over {span:.1f}s, limit 20/s"
    assert len({r["worker"] for r in records}) == 3, "all three workers should have run jobs"
    assert len(records) == len({h.id for h in handles}) == 130
    assert read_stats()["io_wait"]["parked"] > 50  # far turns waited in Redis, not in workers


def test_a_per_host_key_gives_each_host_its_own_limit(workers, local_site):
    started = [workers("io", ready=False, concurrency=50) for _ in range(2)]
    for worker in started:
        worker.wait_ready(timeout=60)
    CliRunner().invoke(main, ["limits", "set", "fetch_url", "5/s"])
    hosts = {"127.0.0.1": [], "localhost": []}
    batch = []
    for n in range(30):
        for host in hosts:
            batch.append({"url": f"http://{host}:{local_site.port}/page/{n}", "timeout": 5})

    handles = submit_many("fetch_url", batch)
    records = wait_for_records([h.id for h in handles], timeout=60)

    for item, record in zip(batch, records, strict=True):
        hosts[item["url"].split("//")[1].split(":")[0]].append(record["finished_at"])
    for host, finished in hosts.items():
        rate, span = observed_rate(finished)
        assert 4.25 <= rate <= 5.75, f"{host}: {rate:.2f} jobs/s over {span:.1f}s, limit 5/s"
    both = observed_rate(hosts["127.0.0.1"] + hosts["localhost"])[0]
    assert both > 8.0, "the two hosts should not share one limit"


def test_cpu_jobs_waiting_for_their_turn_are_parked_in_redis_not_in_a_process(workers):
    # A prefork process waiting for a token could run nothing else; jobq parks such jobs.
    workers("cpu", concurrency=2)
    CliRunner().invoke(main, ["limits", "set", "cpu_spin", "5/s"])

    handles = submit_many("cpu_spin", [{"ms": 1}] * 20)
    records = wait_for_records([h.id for h in handles], timeout=60)

    rate, span = observed_rate([r["finished_at"] for r in records])
    assert 4.25 <= rate <= 5.75, f"observed {rate:.2f} jobs/s over {span:.1f}s, limit 5/s"
    assert read_stats()["cpu_spin"]["parked"] >= 15


def limits_by_job(runner: CliRunner) -> dict[str, dict]:
    result = runner.invoke(main, ["limits", "--json"])
    assert result.exit_code == 0, result.output
    return {row["job"]: row for row in json.loads(result.output)}


def test_limits_can_be_read_changed_and_cleared_at_run_time(redis_client):
    runner = CliRunner()
    assert runner.invoke(main, ["limits", "set", "io_wait", "600/m"]).exit_code == 0
    rows = limits_by_job(runner)
    assert rows["io_wait"]["effective"] == "600/m"
    assert rows["fetch_url"]["key"] == "host of url"

    assert runner.invoke(main, ["limits", "clear", "io_wait"]).exit_code == 0
    rows = limits_by_job(runner)
    assert rows["io_wait"]["effective"] is None

    bad = runner.invoke(main, ["limits", "set", "io_wait", "fast"])
    assert bad.exit_code == 2
    assert "not a rate" in bad.output
    assert runner.invoke(main, ["limits", "set", "no_such_job", "1/s"]).exit_code == 2


def test_rates_parse_and_a_run_time_limit_overrides_the_declared_one():
    assert parse_rate("20/s").interval == pytest.approx(0.05)
    assert parse_rate("600/m").per_second() == pytest.approx(10)
    assert parse_rate("3600/h").interval == pytest.approx(1)
    for bad in ("", "20", "0/s", "-1/s", "20/d", "x/s"):
        with pytest.raises(InvalidRate):
            parse_rate(bad)
    assert effective_rate("20/s", None).text == "20/s"
    assert effective_rate("20/s", "5/s").text == "5/s"
    assert effective_rate("20/s", "off") is None
    assert effective_rate(None, None) is None


def test_run_time_limits_are_read_once_however_many_jobs_ask_at_the_same_moment(monkeypatch):
    import gevent
    import gevent.lock

    from workers.features import rate_limits as ratelimit

    reads: list[int] = []

    def slow_read() -> dict[str, str]:
        reads.append(1)
        gevent.sleep(0.05)  # a Redis round trip, during which other greenlets run
        return {"fetch_url": "5/s"}

    monkeypatch.setattr(ratelimit, "read_overrides", slow_read)
    cache = ratelimit._LimitCache()
    cache._refreshing = gevent.lock.Semaphore()  # what monkey-patching makes of threading.Lock
    jobs = [gevent.spawn(cache.get, "fetch_url") for _ in range(100)]
    gevent.joinall(jobs)

    assert len(reads) == 1  # not one HGETALL (and connection) per job in flight
    # Before the first read no job runs unlimited: they all waited for it.
    assert [job.value for job in jobs] == ["5/s"] * 100

    # Later refreshes: one job reads, the others go on with the last values meanwhile.
    cache._read_at = float("-1e9")
    jobs = [gevent.spawn(cache.get, "fetch_url") for _ in range(100)]
    gevent.joinall(jobs)
    assert len(reads) == 2
    assert [job.value for job in jobs] == ["5/s"] * 100


def test_a_message_claiming_a_reserved_turn_still_waits_for_one(workers, redis_client):
    # The rate limiter runs a parked job at once when it comes back: its turn is reserved. A
    # message from any Celery client saying so (the header the parking used to add) must not
    # skip the limit.
    worker = workers("io", concurrency=50)
    CliRunner().invoke(main, ["limits", "set", "io_wait", "2/s"])
    ids = [f"claims-a-turn-{n}" for n in range(12)]
    for job_id in ids:
        headers = {**task_headers("io_wait", job_id), "jobq_rate_slot": time.time()}
        redis_client.lpush("io", envelope(task_body({"ms": 1}), queue="io", headers=headers))

    records = wait_for_records(ids, timeout=60)
    finished = [r["finished_at"] for r in records]  # started_at is before a wait in place
    # 3 in a second at 2/s; up to 5 when jobs come back late together (TURN_GRACE_SECONDS).
    assert busiest_second(finished) <= 5, f"{busiest_second(finished)} jobs ran in one second"
    assert worker.alive()


def test_jobs_parked_while_their_pool_is_paused_keep_to_the_limit_on_resume(workers, redis_client):
    # While a pool is paused (or has no worker) nothing consumes its queue: parked jobs whose
    # turn comes then must stay parked, and not all run at once when the pool comes back.
    workers("io", concurrency=50)
    CliRunner().invoke(main, ["limits", "set", "io_wait", "10/s"])
    handles = submit_many("io_wait", [{"ms": 1}] * 40)
    wait_until(lambda: read_stats().get("io_wait", {}).get("parked", 0) >= 20, timeout=30)
    pause("io")
    # Paused until every turn reserved before the pause (4 s of them) has passed and expired.
    wait_until(lambda: not redis_client.keys(TURN_PREFIX + "*"), timeout=30)
    resume("io")

    records = wait_for_records([h.id for h in handles], timeout=60)
    finished = [r["finished_at"] for r in records]  # started_at is before a wait in place
    assert len(records) == 40
    assert busiest_second(finished) <= 12, f"{busiest_second(finished)} jobs ran in one second"


def test_jobs_parked_while_their_pool_has_no_worker_stay_parked(workers, redis_client):
    # The I/O worker that parked the jobs dies; a CPU worker stays up. It must not put I/O jobs
    # back on a queue nobody consumes, for the next I/O worker to run them all at once.
    # A short lease: the jobs the killed worker held unparked come back in seconds, not after
    # the default 30 s; they are run under the limit like the parked ones.
    io_worker = workers("io", concurrency=50, env=FAST_LEASE, ready=False)
    cpu_worker = workers("cpu", concurrency=1, env=FAST_LEASE, ready=False)
    for started in (io_worker, cpu_worker):
        started.wait_ready(timeout=60)
    CliRunner().invoke(main, ["limits", "set", "io_wait", "10/s"])
    handles = submit_many("io_wait", [{"ms": 1}] * 40)
    wait_until(lambda: read_stats().get("io_wait", {}).get("parked", 0) >= 20, timeout=30)
    io_worker.kill()
    # Every turn has passed (the schedule expires a second after the last one) …
    wait_until(lambda: not redis_client.exists(SCHEDULE_PREFIX + "io_wait"), timeout=30)
    wait_until(lambda: not redis_client.keys(TURN_PREFIX + "*"), timeout=30)
    # … and the jobs are still parked, not piled up in a queue without a consumer.
    assert redis_client.zcard(DELAYED_PREFIX + "io") >= 20
    workers("io", concurrency=50, env=FAST_LEASE)

    records = wait_for_records([h.id for h in handles], timeout=90)
    finished = [r["finished_at"] for r in records]
    assert busiest_second(finished) <= 12, f"{busiest_second(finished)} jobs ran in one second"


def test_per_host_means_the_host_whatever_the_credentials_and_default_port():
    host_of = by_host("url")
    same = [
        "http://alice:pw1@Example.com/a",
        "http://bob:pw2@example.com:80/b",
        "HTTP://EXAMPLE.COM./c",
        "http://example.com",
    ]
    assert {host_of({"url": url}) for url in same} == {"example.com"}
    assert host_of({"url": "https://example.com:443/"}) == "example.com"
    assert host_of({"url": "https://example.com:8443/"}) == "example.com:8443"
    assert host_of({"url": "http://example.com:443/"}) == "example.com:443"
    assert host_of({"url": "http://u:p@[::1]:8080/"}) == "[::1]:8080"


def test_url_credentials_never_reach_a_redis_key_name(workers, redis_client, local_site):
    workers("io", concurrency=10)
    # Slow enough that the schedule (which expires a second after its last turn) is still there.
    CliRunner().invoke(main, ["limits", "set", "fetch_url", "1/s"])
    urls = [f"http://user:s3cret{n}@127.0.0.1:{local_site.port}/page/{n}" for n in range(3)]
    handles = submit_many("fetch_url", [{"url": url, "timeout": 5} for url in urls])
    wait_for_records([h.id for h in handles], timeout=60)

    schedules = sorted(redis_client.keys(SCHEDULE_PREFIX + "*"))
    assert schedules == [f"{SCHEDULE_PREFIX}fetch_url:127.0.0.1:{local_site.port}"]
    assert not [key for key in redis_client.keys("*") if "s3cret" in key]


@pytest.mark.integration
def test_fault_scenario_pause_with_parked_jobs_loses_nothing_and_keeps_the_limit(tmp_path):
    with lab(tmp_path) as running:
        result = paused_with_parked_jobs(running)
    assert result.tally.lost == 0, result
    assert result.tally.duplicate_starts == 0, result
    assert result.tally.notes["parked_while_paused"] > 0, result
    assert result.ok, result
