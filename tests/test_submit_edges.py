"""The producer's edge under faults: a submit whose reply is lost, repeated with its key.

The scenario runs in a fault lab (its own redis-server, an I/O and a CPU worker) with a
loopback proxy that loses the reply to each enqueue after Redis applied it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ops.faults.lab import lab
from ops.faults.submit_edges import lost_reply_submit

pytestmark = pytest.mark.integration


def test_a_lost_reply_repeated_with_its_key_runs_every_job_once(tmp_path: Path) -> None:
    with lab(tmp_path) as running:
        result = lost_reply_submit(running, per_pool=1)
    assert result.tally.notes["replies_lost"] == 4, result  # the fault did happen
    assert result.tally.lost == 0, result
    assert result.tally.duplicate_starts == 0, result
    # Without a key the same lost reply makes a second job: the key is what prevents it.
    assert result.tally.notes["control_without_key_jobs"] > 2, result
