"""A full Redis (maxmemory, noeviction): workers lose no job and do not exit; they resume.

The lab runs its own redis-server and lowers its ``maxmemory``; the session's server is never
made full.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ops.faults.lab import lab
from ops.faults.redis_full import redis_full

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
