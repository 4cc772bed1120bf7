"""Redis restarts: queued jobs survive (append-only file), clients reconnect by themselves.

The lab runs its own redis-server (``appendonly yes``, ``appendfsync always``), so killing it
does not disturb the session's server; workers reach it through ``REDIS_URL``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ops.faults.lab import lab
from ops.faults.scenarios import producer_outage, redis_restart

# Every test here runs a fault lab: its own redis-server and workers.
pytestmark = pytest.mark.integration


@pytest.mark.parametrize("crash", [True, False], ids=["sigkill", "sigterm"])
def test_queued_jobs_survive_a_redis_restart_and_clients_reconnect(
    tmp_path: Path, crash: bool
) -> None:
    with lab(tmp_path, extra={"appendfsync": "always"}) as running:
        result = redis_restart(running, n=200, crash=crash)
    notes = result.tally.notes
    assert notes["queued_after_restart"] == notes["queued_before"], result
    assert notes["worker_survived"], "the worker crashed instead of reconnecting"
    assert result.tally.lost == 0, result


def test_producer_fails_clearly_and_fast_when_redis_is_down(tmp_path: Path) -> None:
    with lab(tmp_path) as running:
        result = producer_outage(running)
    assert result.tally.notes["exit_code"] == 1, result
    assert not result.tally.notes["printed_id"], "a job id was printed for an unsent job"
    assert result.ok, result
    assert result.recovery_s is not None
    assert result.recovery_s < 60, "the producer hung instead of failing"  # a bound, not a speed
