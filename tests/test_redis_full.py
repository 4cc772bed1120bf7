"""A full Redis (maxmemory, noeviction): workers lose no job and do not exit; they resume.

The lab runs its own redis-server and lowers its ``maxmemory``; the session's server is never
made full.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ops.faults.lab import lab
from ops.faults.redis_full import FILLER, FILLER_BYTES, redis_full
from workers.keys import RECORD_PREFIX
from workers.settings import get_settings

from .waiting import wait_until

# Every test here runs a fault lab: its own redis-server and workers.
pytestmark = pytest.mark.integration


def test_workers_fetching_from_a_full_redis_lose_nothing_and_keep_running(tmp_path: Path) -> None:
    with lab(tmp_path) as running:
        result = redis_full(running, n=30)
        logs = "".join(worker.log_tail(20000) for worker in running.workers)
    notes = result.tally.notes
    assert notes["redis_refused_writes"], "the lab's Redis was not full"
    assert notes["workers_survived"], f"a worker exited while Redis was full:\n{logs[-3000:]}"
    assert result.tally.lost == 0, result
    assert "Redis is full" in logs  # said loudly, once per interval
    assert "Redis accepts writes again" in logs


def test_jobs_finishing_while_redis_is_full_keep_their_records_and_are_not_acked_without(
    tmp_path: Path,
) -> None:
    # A job that ends while Redis refuses writes: its record (and result) cannot be written. It
    # must not be acknowledged without them; the writes wait for memory, or the lease brings the
    # job back. Before: each write was "skipped, its job is acked", the record lost for good.
    if not get_settings().fast_paths:
        pytest.skip("the group commit (gevent result writes) is a fast path")
    with lab(tmp_path) as running:
        worker = running.worker("io", concurrency=10)
        client = running.client()
        ids = running.submit_many("io_wait", [{"ms": 2500}] * 5)
        wait_until(lambda: client.hlen("unacked") >= 5, timeout=30, message="jobs not taken")
        client.config_set("maxmemory-policy", "noeviction")
        client.setrange(FILLER, FILLER_BYTES - 1, b"\0")
        client.config_set(
            "maxmemory", int(client.info("memory")["used_memory"]) - FILLER_BYTES // 2
        )
        # Full until the jobs have ended and their group commit has met the refusal.
        wait_until(lambda: "group commit" in worker.log_tail(20000), timeout=30)
        client.delete(FILLER)
        client.config_set("maxmemory", 0)
        records = wait_until(
            lambda: (
                all(r.get("state") == "SUCCESS" for r in recs(client, ids)) and recs(client, ids)
            ),
            timeout=90,
            message="a job finished while Redis was full has no SUCCESS record",
        )
        assert len(records) == 5
        assert worker.alive()


def recs(client: Any, ids: list[str]) -> list[dict[str, str]]:
    return [client.hgetall(RECORD_PREFIX + job_id) for job_id in ids]
