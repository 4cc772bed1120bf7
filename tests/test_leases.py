"""The lease holds at the edges: shutdown, a host clock ahead, a gevent hub blocked by a job.

Each test runs a fault scenario of ops/faults/leases.py in its own lab (a private redis-server,
real workers of both pools, a scaled 3 s lease): jobs outlive the lease on busy workers while
idle live peers stand by to take any job whose lease lapsed. What counts is duplicate starts.
"""

from __future__ import annotations

import glob
from pathlib import Path

import pytest

from ops.faults.lab import lab
from ops.faults.leases import LIBFAKETIME, blocked_hub, clock_skew, rolling_restart
from ops.faults.runner import SCALED_LEASE

# Every test here runs a fault lab: its own redis-server and workers.
pytestmark = pytest.mark.integration
# The shortest lease the settings allow (3 s), renewed every third of it as they advise: the
# jobs outlive it by the same multiples as under ``jobq faults``' 5 s, in fewer seconds.
SHORT_LEASE = {**SCALED_LEASE, "JOBQ_VISIBILITY_TIMEOUT": "3", "JOBQ_LEASE_RENEW_INTERVAL": "1"}
LEASE_S = int(SHORT_LEASE["JOBQ_VISIBILITY_TIMEOUT"])


def test_warm_shutdown_keeps_renewing_until_the_last_job_finishes(tmp_path: Path) -> None:
    with lab(tmp_path, env=SHORT_LEASE) as running:
        result = rolling_restart(running, lease_s=LEASE_S)
    assert result.tally.lost == 0, result
    assert result.tally.duplicate_starts == 0, result


@pytest.mark.skipif(
    not glob.glob(LIBFAKETIME),
    reason="needs libfaketime: Debian's faketime package (CI installs it)",
)
def test_a_host_clock_ahead_hands_out_no_live_job_again(tmp_path: Path) -> None:
    with lab(tmp_path, env=SHORT_LEASE) as running:
        result = clock_skew(running, lease_s=LEASE_S)
    assert result.tally.notes["workers_alive"] == 4, result
    assert result.tally.lost == 0, result
    assert result.tally.duplicate_starts == 0, result


def test_a_blocked_gevent_hub_keeps_the_leases_of_its_jobs(tmp_path: Path) -> None:
    with lab(tmp_path, env=SHORT_LEASE) as running:
        result = blocked_hub(running, lease_s=LEASE_S)
    assert result.tally.lost == 0, result
    assert result.tally.notes["others_started_again"] == 0, result
    assert result.tally.duplicate_starts == 0, result
