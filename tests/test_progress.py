"""Progress: a job's ``progress()`` calls reach Redis a few times a second; every reader sees them.

Real workers of both pools run ``count_to``/``cpu_count_to`` (10 000 ``progress`` calls over a
couple of seconds); MONITOR on the test's own redis-server counts the writes to the job's
progress key. ``handle.progress()``, the result backend's ``PROGRESS`` state, ``jobq show`` and
``jobq top`` read the value while the job runs. The throttle and the argument checks are pure
and tested without processes.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from celery.result import AsyncResult
from click.testing import CliRunner
from rich.console import Console

from jobq import InvalidProgress, progress
from ops.cli import main
from ops.top import TopCollector, render
from producers import submit
from tests.waiting import wait_until
from workers.app import get_app
from workers.keys import PROGRESS_PREFIX
from workers.progress import MAX_NOTE_CHARS, WRITE_INTERVAL_S, check_progress
from workers.stores.progress import Progress
from workers.throttle import Throttle

STEPS = 10_000
JOBS = {"io": "count_to", "cpu": "cpu_count_to"}


# --- pure logic -----------------------------------------------------------------------------


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_throttle_writes_the_first_value_then_at_most_one_per_interval_the_latest():
    clock = Clock()
    throttle: Throttle[int] = Throttle(interval=0.25, clock=clock)
    written = []
    for step in range(1, 10_001):
        clock.now += 0.0001  # 10 000 calls in one second
        if (value := throttle.offer(step)) is not None:
            written.append(value)
    assert written[0] == 1
    assert 4 <= len(written) <= 5  # one per quarter of a second, not 10 000
    # The value held back since the last write is the latest one, and is drained once.
    assert throttle.drain() == 10_000
    assert throttle.drain() is None
    # After a pause longer than the interval, the next value goes at once.
    clock.now += 1
    assert throttle.offer(7) == 7
    assert throttle.drain() is None


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        ((-1,), "negative"),
        ((5, 3), "more than total"),
        ((1, 0), "total must be positive"),
        (("3",), "finite number"),
        ((True,), "finite number"),
        ((float("nan"),), "finite number"),
        ((1, 2, 3), "note must be a string"),
        ((1, 2, "x" * (MAX_NOTE_CHARS + 1)), "characters"),
    ],
)
def test_bad_progress_arguments_raise_a_clear_error(args, complaint):
    with pytest.raises(InvalidProgress, match=complaint):
        progress(*args)


def test_progress_outside_a_job_writes_nothing_and_says_so():
    assert progress(3, 10, note="in a unit test") is False
    assert check_progress(3, 10, "rows").describe() == "3/10 (30%) rows"
    assert Progress(done=2.5, note="MB").describe() == "2.5 MB"


# --- real workers ----------------------------------------------------------------------------


@contextmanager
def monitored_sets(redis_server: Any, key: str) -> Iterator[list[float]]:
    """Server times of every ``SET key`` Redis runs meanwhile (MONITOR on its own connection)."""
    times: list[float] = []
    stop = threading.Event()
    started = threading.Event()

    def watch() -> None:
        with redis_server.client().monitor() as monitor:
            started.set()
            while not stop.is_set():
                command = monitor.next_command()
                if command["command"].startswith(f"SET {key} "):
                    times.append(float(command["time"]))

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield times
    finally:
        stop.set()
        redis_server.client().ping()  # one more command wakes the watcher up to see the stop
        thread.join(10)


@pytest.mark.parametrize("pool", ["io", "cpu"])
def test_ten_thousand_progress_calls_make_a_few_writes_a_second_on_both_pools(
    pool, shared_workers, redis_server
):
    shared_workers(pool, concurrency=2)
    handle = submit(JOBS[pool], n=STEPS, ms=2000, note="items")
    with monitored_sets(redis_server, PROGRESS_PREFIX + handle.id) as writes:
        # Readable while the job runs: the handle, and Celery's custom state with its meta.
        seen = wait_until(
            lambda: (p := handle.progress()) is not None and p.done < STEPS and p,
            timeout=30,
            message="no progress while the job ran",
        )
        assert (seen.total, seen.note) == (STEPS, "items")
        running = AsyncResult(handle.id, app=get_app())
        meta = wait_until(lambda: running.state == "PROGRESS" and running.info, timeout=10)
        assert meta["total"] == STEPS
        assert 0 < meta["done"] <= STEPS
        assert handle.get(timeout=60)["n"] == STEPS
    # The last value reported is the one stored, and the final result replaced PROGRESS.
    final = handle.progress()
    assert final is not None
    assert (final.done, final.total, final.note) == (STEPS, STEPS, "items")
    assert handle.state == "SUCCESS"
    # 10 000 calls, a few writes a second: the first, one per interval, and the one held back.
    assert len(writes) >= 2
    span = writes[-1] - writes[0]
    assert len(writes) <= span / WRITE_INTERVAL_S + 2, (len(writes), span)
    assert len(writes) < 100


def test_a_fire_and_forget_job_reports_progress_and_still_ends_as_it_did(shared_workers):
    shared_workers("io", concurrency=2)
    handle = submit("count_to", n=20, ms=200, note="quiet", ignore_result=True)
    final = wait_until(
        lambda: (p := handle.progress()) is not None and p.done == 20 and p, timeout=30
    )
    assert final.note == "quiet"
    # No PROGRESS state left behind in the result backend: the job stores no result at all.
    wait_until(lambda: CliRunner().invoke(main, ["show", handle.id]).exit_code == 0, timeout=10)
    assert AsyncResult(handle.id, app=get_app()).state == "PENDING"
    output = CliRunner().invoke(main, ["show", handle.id]).output
    assert "20/20 (100%) quiet" in output


def test_jobq_show_and_top_print_the_progress_of_a_running_job(shared_workers):
    worker = shared_workers("io", concurrency=2)
    handle = submit("count_to", n=100, ms=30_000, note="pages fetched")
    wait_until(lambda: (p := handle.progress()) is not None and p.done >= 2, timeout=30)

    result = CliRunner().invoke(main, ["show", handle.id])
    assert result.exit_code == 0, result.output
    assert re.search(r"state\s+PROGRESS", result.output), result.output
    line = re.search(r"progress\s+(.*)", result.output)
    assert line, result.output
    assert re.match(r"[━╸]", line.group(1)), result.output  # the bar, then the numbers
    done = int(re.search(r"(\d+)/100 \(\d+%\) pages fetched", line.group(1)).group(1))
    assert 2 <= done < 100
    assert not re.search(r"result\s+\{", result.output)  # the PROGRESS meta is no result

    collector = TopCollector()
    collector.poll_workers(timeout=2.0)
    state = collector.collect()
    console = Console(record=True, width=160)
    console.print(render(state))
    frame = console.export_text()
    assert "progress" in frame
    row = next(line for line in frame.splitlines() if handle.id[:8] in line)
    assert "count_to" in row, frame
    assert worker.node_name in row, frame
    assert re.search(r"\d+/100 \(\d+%\) pages fetched", row), frame


def test_a_cancelled_job_that_reports_progress_ends_revoked_not_progress(workers, redis_client):
    # The last value held back by the throttle used to be written as the greenlet was killed,
    # over the REVOKED the cancel had stored: the job looked running for ever, get() hung.
    from celery.exceptions import TaskRevokedError

    from workers.stores.job_records import read_records

    workers("io", concurrency=2)
    handle = submit("count_to", n=100_000, ms=30_000, note="rows")
    wait_until(lambda: handle.progress() is not None, timeout=30, message="no progress")
    handle.cancel()
    wait_until(lambda: handle.result.state == "REVOKED", timeout=15, message="not REVOKED")
    with pytest.raises(TaskRevokedError):
        handle.get(timeout=5)
    # Still REVOKED once the worker has recorded the cancel (after the greenlet was killed).
    wait_until(
        lambda: read_records([handle.id])[0].get("state") == "REVOKED", timeout=15,
        message="no REVOKED record",
    )  # fmt: skip
    assert AsyncResult(handle.id, app=get_app()).state == "REVOKED"


def test_a_value_held_back_is_written_even_when_the_job_reports_nothing_more(redis_client):
    # A job reports twice within the interval, then works for minutes: the second value must
    # not wait for the job's end (it used to, so show/top/handles said the first for minutes).
    from types import SimpleNamespace

    from workers.progress import Reporter
    from workers.stores.progress import read_progress

    task = SimpleNamespace(backend=None, send_event=None)
    reporter = Reporter(
        task=task, job_id="held-back", ttl=60, stores_result=False,
        request=SimpleNamespace(hostname=None),
    )  # fmt: skip
    reporter.report(check_progress(1, 3, "download"))
    reporter.report(check_progress(2, 3, "parse"))
    wait_until(
        lambda: (read_progress(["held-back"])[0] or Progress(0)).note == "parse",
        timeout=5,
        message="the held-back value was never written",
    )
    reporter.flush()


@pytest.mark.parametrize("ended", ["REVOKED", "FAILURE", "SUCCESS"])
def test_a_progress_write_landing_after_the_end_leaves_the_final_state(redis_client, ended):
    # A cancelled job's last value, or a late duplicate's, must not turn its end into PROGRESS.
    import uuid
    from types import SimpleNamespace

    from workers.progress import Reporter

    backend = get_app().backend
    job_id = str(uuid.uuid4())
    outcome = {"REVOKED": None, "FAILURE": ValueError("boom"), "SUCCESS": 42}[ended]
    backend.store_result(job_id, outcome, ended)
    reporter = Reporter(
        task=SimpleNamespace(backend=backend, send_event=None), job_id=job_id, ttl=60,
        stores_result=True, request=SimpleNamespace(hostname=None, id=job_id),
    )  # fmt: skip
    reporter.write(check_progress(5, 10, "late"), event=False)
    assert AsyncResult(job_id, app=get_app()).state == ended
