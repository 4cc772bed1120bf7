"""Workers die, jobs survive: child SIGKILL, whole-worker SIGKILL, and long jobs under a lease.

Each test runs in its own fault lab (a private redis-server and real workers with a short
lease, ops/faults/lab.py), submits jobs that record their effect by job id, injects the fault,
waits for quiescence, and counts lost and duplicated jobs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ops.faults.lab import Lab, lab
from ops.faults.scenarios import child_sigkill, long_jobs_on_live_workers, worker_sigkill


def test_prefork_child_sigkill_retries_the_job_at_once(fault_lab: Lab) -> None:
    result = child_sigkill(fault_lab)
    assert result.tally.lost == 0, result
    assert result.tally.duplicate_effects == 0, result
    assert result.tally.duplicate_starts == 1, result  # the killed run, and only it, ran again
    assert result.recovery_s is not None, result


@pytest.mark.parametrize("pool", ["io", "cpu"])
def test_whole_worker_sigkill_returns_running_and_prefetched_jobs(
    fault_lab: Lab, pool: str
) -> None:
    result = worker_sigkill(fault_lab, pool)
    running = result.tally.notes["running_at_kill"]
    assert result.tally.lost == 0, result
    assert result.tally.duplicate_effects == 0, result  # killed runs never recorded an effect
    assert result.tally.duplicate_starts <= running, result
    if pool == "io":
        assert result.tally.notes["held_at_kill"] > running, "nothing was prefetched"
    # Back in the queue and running elsewhere within the promised 60 s (lease here: 6 s).
    assert result.recovery_s is not None, result
    assert result.recovery_s < 60, result


@pytest.mark.integration
def test_long_jobs_on_a_live_worker_are_never_handed_out_twice(tmp_path: Path) -> None:
    # A 3 s lease renewed every second; the jobs run 12 s on one worker while another idles.
    short = {"JOBQ_VISIBILITY_TIMEOUT": "3", "JOBQ_LEASE_RENEW_INTERVAL": "1"}
    with lab(tmp_path, env=short) as running:
        result = long_jobs_on_live_workers(running, "io", lease_s=3, n=2)
    assert result.tally.lost == 0, result
    assert result.tally.duplicate_starts == 0, result
