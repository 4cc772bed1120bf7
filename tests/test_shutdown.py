"""Orderly shutdown: SIGTERM (what ``docker compose stop`` sends) loses and repeats nothing.

The worker stops taking jobs, finishes the ones it runs, and puts the ones it holds but has not
started back in the queue as it exits; a worker started afterwards runs them exactly once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ops.faults.lab import lab
from ops.faults.scenarios import sigterm

# Every test here runs a fault lab: its own redis-server and workers.
pytestmark = pytest.mark.integration


@pytest.mark.parametrize("pool", ["io", "cpu"])
def test_sigterm_finishes_running_jobs_and_returns_the_rest(tmp_path: Path, pool: str) -> None:
    with lab(tmp_path) as running:
        result = sigterm(running, pool)
    notes = result.tally.notes
    assert notes["finished_before_exit"] >= notes["running_at_term"], result
    assert notes["unacked_at_exit"] == 0, result  # nothing left invisible
    assert notes["back_in_queue_at_exit"] == result.tally.submitted - notes["finished_before_exit"]
    assert result.tally.lost == 0, result
    assert result.tally.duplicate_starts == 0, result
