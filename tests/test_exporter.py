"""`jobq exporter`: scrape the real endpoint and check its numbers against a known workload."""

from __future__ import annotations

import os
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ops.processes import ManagedProcess, jobq_argv, spawn
from producers import submit_many
from tests.waiting import wait_until
from workers.stores.job_records import read_records
from workers.stores.rate_limits import read_stats, set_limit


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def exporter(redis_client, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    process: ManagedProcess = spawn(
        "exporter",
        jobq_argv("exporter", "--port", str(port)),
        env=dict(os.environ),
        log_dir=tmp_path,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_until(lambda: _reachable(url), timeout=30, message=process.log_tail())
        yield url
    finally:
        process.stop(timeout=10)


def _reachable(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - http://127.0.0.1 only
            return True
    except OSError:
        return False


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the scrape, by (name, sorted labels)."""
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def at(samples: dict, name: str, **labels: str) -> float:
    """The value of one sample of a scrape."""
    return samples[(name, tuple(sorted(labels.items())))]


def test_exporter_reports_backlog_then_the_histograms_of_what_ran(exporter, workers):
    # Before any worker runs: 7 I/O jobs wait.
    waiting = submit_many("io_wait", [{"ms": 20}] * 7)
    before = scrape(exporter)
    assert at(before, "jobq_redis_up") == 1
    assert at(before, "jobq_queue_depth", queue="io") == 7
    assert at(before, "jobq_queue_depth", queue="cpu") == 0
    assert at(before, "jobq_queue_oldest_job_age_seconds", queue="io") > 0
    assert at(before, "jobq_queue_oldest_job_age_seconds", queue="cpu") == 0
    assert at(before, "jobq_dead_letters") == 0
    assert not any(name.startswith("jobq_job_wait_seconds") for name, _ in before)

    # A run-time limit of 10/s on io_wait: 7 jobs at once, so most wait in place for their turn.
    set_limit("io_wait", "10/s")
    workers("io", concurrency=5)
    workers("cpu", concurrency=1)
    spun = submit_many("cpu_spin", [{"ms": 5}] * 4)
    ids = [h.id for h in waiting + spun]
    wait_until(
        lambda: all(r.get("state") == "SUCCESS" for r in read_records(ids)),
        timeout=60,
        message="the workload did not finish",
    )

    after = scrape(exporter)
    io_wait = {"job": "io_wait", "pool": "io"}
    cpu_spin = {"job": "cpu_spin", "pool": "cpu"}
    assert at(after, "jobq_queue_depth", queue="io") == 0
    assert at(after, "jobq_queue_unacked", queue="io") == 0
    assert at(after, "jobq_queue_oldest_job_age_seconds", queue="io") == 0
    assert at(after, "jobq_jobs_finished_total", **io_wait, state="SUCCESS") == 7
    assert at(after, "jobq_jobs_finished_total", **cpu_spin, state="SUCCESS") == 4
    for measure in ("wait", "run"):
        name = f"jobq_job_{measure}_seconds"
        assert at(after, f"{name}_count", **io_wait) == 7
        assert at(after, f"{name}_count", **cpu_spin) == 4
        assert at(after, f"{name}_bucket", **io_wait, le="+Inf") == 7
        buckets = sorted(
            (float(dict(labels)["le"]), value)
            for (sample, labels), value in after.items()
            if sample == f"{name}_bucket" and dict(labels)["job"] == "io_wait"
        )
        counts = [value for _, value in buckets]
        assert counts == sorted(counts), "buckets must be cumulative"
    # io_wait sleeps 20 ms: the run time sum is at least 7 × 20 ms, and no run is under 10 ms.
    assert at(after, "jobq_job_run_seconds_sum", **io_wait) >= 7 * 0.020
    assert at(after, "jobq_job_run_seconds_bucket", **io_wait, le="0.01") == 0

    # Most of them waited (how many depends on when each was taken); the exporter reports
    # exactly what the limiter counted.
    limiter = read_stats()["io_wait"]
    assert at(after, "jobq_rate_limit_waits_total", job="io_wait") == limiter["waits"] >= 3
    assert at(after, "jobq_rate_limit_wait_seconds_total", job="io_wait") > 0

    # Counters live in Redis, not in the exporter: a second scrape reads the same totals.
    again = scrape(exporter)
    assert at(again, "jobq_job_wait_seconds_count", **io_wait) == 7
    assert at(again, "jobq_jobs_finished_total", **cpu_spin, state="SUCCESS") == 4
