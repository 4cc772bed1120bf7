"""Soft and hard time limits in both pools, including what gevent lacks on its own.

Limits are set per message (``time_limit``/``soft_time_limit`` as any Celery client sends them),
so one worker per pool serves every case. A job stopped by a hard limit is dead-lettered with
``reason=time_limit``, and the same worker then runs the next job.
"""

from __future__ import annotations

from typing import Any

from tests.waiting import wait_until
from workers.app import app
from workers.stores.dead_letters import get_dead, list_dead


def send(job: str, queue: str, **options: Any) -> Any:
    kwargs = options.pop("kwargs")
    return app.send_task(job, kwargs=kwargs, queue=queue, **options)


def dead_reason(job_id: str) -> str | None:
    return get_dead(job_id)["reason"] if job_id in {e["id"] for e in list_dead()} else None


def test_gevent_soft_limit_hard_limit_and_non_yielding_loop(workers: Any) -> None:
    worker = workers("io", concurrency=4)
    # Soft limit (gevent has none of its own): the job catches it and cleans up.
    soft = send("sleep_soft", "io", kwargs={"seconds": 30}, soft_time_limit=1, time_limit=10)
    assert soft.get(timeout=30) == "cleaned up"

    # Hard limit on a job that yields (Celery's gevent.Timeout).
    sleeper = send("io_wait", "io", kwargs={"ms": 30_000}, time_limit=2)
    # Hard limit on a job that never yields: only jobq's watchdog can stop it.
    spinner = send("compute_forever", "io", kwargs={"seconds": 30}, time_limit=2)
    wait_until(lambda: dead_reason(sleeper.id) and dead_reason(spinner.id), timeout=40)
    assert dead_reason(sleeper.id) == "time_limit"
    assert dead_reason(spinner.id) == "time_limit"
    assert "TimeLimitExceeded" in get_dead(spinner.id)["error"]

    assert worker.alive()
    assert send("io_wait", "io", kwargs={"ms": 1}).get(timeout=30)["ms"] == 1


def test_prefork_soft_and_hard_limits(workers: Any) -> None:
    worker = workers("cpu", concurrency=1)
    soft = send("spin_soft", "cpu", kwargs={"seconds": 30}, soft_time_limit=1, time_limit=10)
    assert soft.get(timeout=30) == "cleaned up"

    # A job that ignores its soft limit is killed at the hard one. (A per-job hard limit below
    # the worker's soft limit fires late in prefork, measured ~40 s: set both, soft < hard.)
    hard = send(
        "spin_soft",
        "cpu",
        kwargs={"seconds": 30, "ignore_soft": True},
        soft_time_limit=1,
        time_limit=2,
    )
    wait_until(lambda: dead_reason(hard.id), timeout=40)
    assert dead_reason(hard.id) == "time_limit"

    assert worker.alive()  # the pool replaced the killed child
    assert send("cpu_spin", "cpu", kwargs={"ms": 1}).get(timeout=30)["ms"] == 1
