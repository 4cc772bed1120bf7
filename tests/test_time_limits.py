"""Soft and hard time limits in both pools, including what gevent lacks on its own.

Limits are set per message (``time_limit``/``soft_time_limit`` as any Celery client sends them),
so one worker per pool serves every case. A job stopped by a hard limit is dead-lettered with
``reason=time_limit``, and the same worker then runs the next job.
"""

from __future__ import annotations

import signal
from typing import Any

from tests.waiting import wait_until
from workers.app import app, get_app
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


def test_a_job_that_blocks_the_hub_during_warm_shutdown_is_stopped_at_its_hard_limit(
    workers: Any,
) -> None:
    # The watchdog must outlive the pool's drain: a job still running after SIGTERM that starts
    # computing without yielding is stopped at its hard limit, so the worker exits in time (the
    # compose grace period is sized on the hard limit) instead of when the job ends.
    worker = workers("io", concurrency=2)
    job = send("wait_then_compute", "io", kwargs={"wait_s": 3, "compute_s": 60}, time_limit=6)
    wait_until(
        lambda: any((get_app().control.inspect(timeout=0.5).active() or {}).values()), timeout=20
    )
    worker.signal(signal.SIGTERM)

    assert worker.process.wait(timeout=30) is not None  # not the 63 s the job would take
    assert dead_reason(job.id) == "time_limit"
