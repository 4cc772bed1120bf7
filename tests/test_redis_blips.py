"""Redis blips: a restart kills no running job, and no failure is acknowledged unrecorded.

The restart test runs a fault lab (its own redis-server, restarted on the same port with its
append-only file, and real workers in both pools), through the ``jobq faults`` scenario. The
dead-letter tests make the store refuse a write while the broker works, with real workers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ops.faults.blips import redis_restarts_while_running
from ops.faults.lab import lab
from ops.faults.messages import task_envelope
from ops.faults.runner import PRODUCTION_LEASE
from ops.redis_server import free_port
from producers import submit
from tests.waiting import wait_until
from workers.app import get_app
from workers.registry.request import LeftToLease
from workers.settings import get_settings
from workers.stores.client import get_redis
from workers.stores.dead_letters import DeadLetterNotFound, get_dead, list_dead

pytestmark = pytest.mark.integration


def test_jobs_running_across_redis_restarts_complete_once_and_are_not_dead_lettered(
    tmp_path: Path,
) -> None:
    # The production lease (30 s): Redis is away for seconds, far less than the lease.
    with lab(tmp_path, env=PRODUCTION_LEASE, extra={"appendfsync": "always"}) as running:
        result = redis_restarts_while_running(running, restarts=3)
    tally = result.tally
    assert tally.lost == 0, result
    assert tally.duplicate_starts == 0, result
    assert tally.dead_lettered == 0, result
    assert tally.notes["workers_alive"] == 3, result
    assert result.ok, result


# Fast leases, so a job left unacknowledged comes back in seconds.
FAST_LEASE = {
    "JOBQ_VISIBILITY_TIMEOUT": "6",
    "JOBQ_LEASE_RENEW_INTERVAL": "2",
    "JOBQ_RESTORE_INTERVAL": "1",
}


def _dead_letter(job_id: str) -> dict[str, Any] | None:
    try:
        return get_dead(job_id)
    except DeadLetterNotFound:
        return None


@pytest.mark.parametrize(
    ("pool", "job", "kwargs"),
    [
        ("cpu", "always_fail", {"message": "boom"}),
        ("io", "write_file", {"path": "/nonexistent-dir/jobq/file"}),
    ],
    ids=["prefork", "gevent"],
)
def test_a_failure_whose_dead_letter_cannot_be_stored_comes_back_and_is_dead_lettered(
    workers: Any, redis_client: Any, pool: str, job: str, kwargs: dict[str, Any]
) -> None:
    # The dead-letter store refuses writes (a key of the wrong type), as Redis away would.
    redis_client.set(get_settings().dead_letter_key, "not a hash")
    worker = workers(pool, concurrency=2, env=FAST_LEASE)
    handle = submit(job, **kwargs)
    wait_until(
        lambda: f"could not dead-letter job {handle.id}" in worker.log_tail(200_000),
        timeout=60,
        message="the job did not fail",
    )
    redis_client.delete(get_settings().dead_letter_key)  # the store works again
    entry = wait_until(
        lambda: _dead_letter(handle.id),
        timeout=40,
        message="the failure was acknowledged without a dead letter: it is lost",
    )
    assert entry["job"] == job


def test_a_check_before_the_body_that_cannot_reach_redis_is_not_a_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A real client to a port where no Redis listens: the delivery-limit check of a redelivered
    # job cannot reach Redis. The job must not fail (which would dead-letter or drop it); its
    # delivery is left to its lease.
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    get_settings.cache_clear()
    get_redis.cache_clear()
    try:
        task = get_app().tasks["record_effect"]
        task.push_request(id="redelivered-job", retries=1, delivery_info={"redelivered": True})
        try:
            with pytest.raises(LeftToLease, match="Redis unreachable before the job started"):
                task(tag="blip", ms=0)
        finally:
            task.pop_request()
    finally:
        get_settings.cache_clear()
        get_redis.cache_clear()


def test_a_refused_message_whose_dead_letter_cannot_be_stored_comes_back(
    workers: Any, redis_client: Any
) -> None:
    redis_client.set(get_settings().dead_letter_key, "not a hash")
    worker = workers("io", concurrency=2, env=FAST_LEASE)
    redis_client.lpush("io", task_envelope("no_such_job", {}, queue="io"))
    wait_until(
        lambda: "could not dead-letter a refused message" in worker.log_tail(200_000),
        timeout=60,
        message="the message was not refused",
    )
    redis_client.delete(get_settings().dead_letter_key)
    wait_until(
        lambda: [d for d in list_dead() if d["reason"] == "unknown_job"],
        timeout=40,
        message="the refused message was dropped without a dead letter",
    )
