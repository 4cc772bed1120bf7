"""Jobs fail well: transient errors retry with backoff, everything else ends in the dead letters.

Real workers run the synthetic faulty jobs of ``workers/jobs/faulty.py``; each run is counted in
Redis by job id, so the tests count executions rather than time them.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ops.faults.lab import lab
from ops.faults.scenarios import poison_gevent
from ops.processes import jobq_argv
from producers import submit, submit_many
from tests.waiting import wait_until
from workers.jobs.faulty import EFFECTS_PREFIX, STARTS_PREFIX
from workers.settings import get_settings
from workers.stores.dead_letters import get_dead, list_dead


def _runs(redis_client: Any, tag: str, job_id: str) -> int:
    return int(redis_client.hget(STARTS_PREFIX + tag, job_id) or 0)


def test_transient_error_retries_with_backoff_then_succeeds(
    workers: Any, redis_client: Any
) -> None:
    workers("io", concurrency=4)
    handle = submit("fail_times", n=2, tag="flaky")
    assert handle.get(timeout=30)["runs"] == 3
    assert _runs(redis_client, "flaky", handle.id) == 3
    assert list_dead() == []


def test_exhausted_retries_and_permanent_errors_are_dead_lettered(
    workers: Any, redis_client: Any
) -> None:
    workers("io", concurrency=4, env={"JOBQ_TRANSIENT_MAX_RETRIES": "2"})
    workers("cpu", concurrency=1)
    flaky = submit("fail_times", n=50, tag="hopeless")
    broken = submit("always_fail", message="boom")

    wait_until(lambda: len(list_dead()) == 2, timeout=40, message="nothing dead-lettered")
    exhausted = get_dead(flaky.id)
    assert exhausted["reason"] == "retries_exhausted"
    assert exhausted["kwargs"] == {"n": 50, "tag": "hopeless"}
    assert exhausted["retries"] == 2
    assert "TransientFault" in exhausted["error"]
    assert "TransientFault" in exhausted["traceback"]
    assert _runs(redis_client, "hopeless", flaky.id) == 3  # first run + 2 retries

    failed = get_dead(broken.id)
    assert failed["reason"] == "failed"  # not declared transient: no retry
    assert failed["kwargs"] == {"message": "boom"}
    assert "ValueError: boom" in failed["traceback"]
    assert failed["queue"] == "cpu"


def test_poison_job_runs_at_most_n_plus_one_times_and_the_pool_keeps_serving(
    workers: Any, redis_client: Any
) -> None:
    workers("cpu", concurrency=2, env={"JOBQ_MAX_RETRIES_ON_WORKER_LOST": "2"})
    poison = submit("crash_process", mode="exit", tag="poison")
    others = submit_many("record_effect_cpu", [{"tag": "bystanders", "ms": 20}] * 20)

    entry = wait_until(lambda: list_dead(), timeout=60, message="poison job never dead-lettered")
    assert [e["id"] for e in entry] == [poison.id]
    assert entry[0]["reason"] == "worker_lost"
    assert _runs(redis_client, "poison", poison.id) == 3  # N + 1 with N = 2
    for handle in others:
        handle.get(timeout=60)
    effects = redis_client.hgetall(EFFECTS_PREFIX + "bystanders")
    assert set(effects) == {h.id for h in others}


def test_dead_cli_lists_shows_retries_and_purges(workers: Any, redis_client: Any) -> None:
    workers("cpu", concurrency=1)
    broken = submit("always_fail", message="cli")
    wait_until(lambda: list_dead(), timeout=30)

    def jobq(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(jobq_argv(*args), capture_output=True, text=True, timeout=60)

    listed = jobq("dead", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == [broken.id]
    shown = jobq("dead", "show", broken.id)
    assert shown.returncode == 0
    assert "ValueError: cli" in shown.stdout
    assert jobq("dead", "show", "no-such-id").returncode == 1

    retried = jobq("dead", "retry", broken.id)
    assert retried.returncode == 0, retried.stderr
    new_id = retried.stdout.split("->")[1].strip()
    wait_until(lambda: [e["id"] for e in list_dead()] == [new_id], timeout=30)  # fails again

    purged = jobq("dead", "purge", "--yes")
    assert purged.returncode == 0
    assert "purged 1" in purged.stderr
    assert list_dead() == []


@pytest.mark.integration
def test_poison_job_killing_the_whole_gevent_worker_is_stopped_by_the_delivery_limit(
    tmp_path: Path,
) -> None:
    # On gevent a crashing job takes the whole worker with it and comes back through the lease;
    # the lab restarts the worker each time, as compose's restart policy would. The shortest
    # lease the settings allow (3 s): the job comes back sooner after each death, the same way.
    short = {"JOBQ_VISIBILITY_TIMEOUT": "3", "JOBQ_LEASE_RENEW_INTERVAL": "1"}
    with lab(tmp_path, env=short) as running:
        result = poison_gevent(running, max_retries=2)
        reasons = [entry["reason"] for entry in running.dead_letters()]
    assert result.tally.notes["poison_executions"] == 3, result  # N + 1
    assert reasons == ["delivery_limit"], result


def test_the_store_keeps_the_newest_dead_letters_up_to_its_cap(redis_client, monkeypatch):
    from workers.settings import get_settings
    from workers.stores.dead_letters import count_dead, dead_letter

    monkeypatch.setenv("JOBQ_DEAD_LETTER_MAX", "5")
    get_settings.cache_clear()
    try:
        ids = [dead_letter({"reason": "malformed", "dead_at": 1000.0 + n}) for n in range(8)]
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()

    # A flood cannot fill Redis: the 3 oldest went, the 5 newest stay, index and data alike.
    assert [entry["id"] for entry in list_dead(limit=50)] == ids[:2:-1]
    assert count_dead() == 5
    assert redis_client.zcard("jobq:dead:index") == 5


def test_a_fire_and_forget_job_stays_so_when_retried_from_the_dead_letters(
    workers: Any, redis_client: Any
) -> None:
    from producers.dead_letters import retry_dead

    workers("cpu", concurrency=1)
    broken = submit("always_fail", message="quiet", ignore_result=True)
    wait_until(lambda: list_dead(), timeout=30)
    assert get_dead(broken.id)["ignore_result"] is True

    new_id = retry_dead(broken.id)
    wait_until(lambda: [e["id"] for e in list_dead()] == [new_id], timeout=30)  # fails again
    assert get_dead(new_id)["ignore_result"] is True


def test_dead_retry_passes_the_admission_gate(redis_client: Any, monkeypatch: Any) -> None:
    from producers.backpressure import QueueFull
    from producers.dead_letters import retry_dead
    from workers.stores.dead_letters import dead_letter

    for name, value in {"JOBQ_CPU_HIGH_WATER": "2", "JOBQ_CPU_LOW_WATER": "1"}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        submit_many("cpu_spin", [{"ms": 1}] * 2)  # the cpu queue is at its mark, nobody consumes
        entry = dead_letter({"reason": "failed", "job": "cpu_spin", "kwargs": {"ms": 1}})
        monkeypatch.setenv("JOBQ_ON_FULL", "fail")
        get_settings.cache_clear()
        with pytest.raises(QueueFull):
            retry_dead(entry)
        assert redis_client.llen("cpu") == 2
        assert get_dead(entry)["job"] == "cpu_spin"  # kept, to retry later
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
