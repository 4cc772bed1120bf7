"""Producers ride out a short Redis outage (producers/outage.py) and give up cleanly after it.

A real ``redis-server`` is stopped and started again under a running ``jobq submit``: the
command waits, then delivers every job it reports; with no Redis at all it exits 1 once
``JOBQ_PRODUCER_RETRY_FOR`` has passed, having printed the ids of exactly what went in. A
refusal (a wrong password) is not an outage: it fails at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops.redis_server import RedisServer, free_port, start_redis

from .waiting import wait_until


@contextlib.contextmanager
def _jobq_submit(
    jobs: Path, *, redis_url: str, retry_for: float
) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """``jobq submit io_wait --file JOBS`` in the background, its stderr in a file to poll."""
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "JOBQ_PRODUCER_RETRY_FOR": str(retry_for),
        "COLUMNS": "200",
    }
    err = jobs.with_suffix(".err")
    with jobs.open() as stdin, err.open("w") as stderr:
        producer = subprocess.Popen(
            [sys.executable, "-m", "ops", "submit", "io_wait", "--file", "-"],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
        )
        try:
            yield producer, err
        finally:
            producer.kill()
            producer.communicate()


BULK = 30_000  # enough that Redis stops while the producer is still sending


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, which the test may stop and restart."""
    server = start_redis(data_dir=tmp_path / "redis")
    yield server
    server.stop()


def _jobs_file(path: Path, count: int) -> Path:
    path.write_text("".join(json.dumps({"ms": n % 50}) + "\n" for n in range(count)))
    return path


def _queued_ids(server: RedisServer) -> list[str]:
    return [json.loads(m)["headers"]["id"] for m in server.client().lrange("io", 0, -1)]


def _stop_mid_submit(server: RedisServer, producer: subprocess.Popen[str]) -> None:
    """Stop Redis once the first batches are in, while the producer is still sending."""
    client = server.client()
    wait_until(lambda: client.llen("io") >= 1000, timeout=60, message="first batches not sent")
    assert producer.poll() is None, "Redis must stop while jobs are still being sent"
    server.stop()  # SIGTERM: Redis flushes its append-only file, so the jobs in it survive


@pytest.mark.integration
def test_submit_waits_for_a_redis_that_comes_up_late(tmp_path: Path):
    port, password = free_port(), "outage-pw"
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    with _jobq_submit(_jobs_file(tmp_path / "one.jsonl", 1), redis_url=url, retry_for=60) as (
        producer,
        err,
    ):
        wait_until(lambda: "unreachable" in err.read_text(), timeout=30, message="no notice")
        assert producer.poll() is None, "it must still be waiting for Redis"
        server = start_redis(data_dir=tmp_path / "redis", port=port, password=password)
        try:
            out, _ = producer.communicate(timeout=60)
            assert producer.returncode == 0, err.read_text()
            assert _queued_ids(server) == out.split()
            assert len(out.split()) == 1
            assert "JOBQ_PRODUCER_RETRY_FOR" in err.read_text()
        finally:
            server.stop()


def test_a_bulk_submit_goes_on_after_a_redis_restart_and_loses_nothing(
    tmp_path: Path, own_redis: RedisServer
):
    jobs = _jobs_file(tmp_path / "jobs.jsonl", BULK)
    with _jobq_submit(jobs, redis_url=own_redis.url, retry_for=60) as (producer, err):
        _stop_mid_submit(own_redis, producer)
        # Down until the producer has noticed: the retry path, not a silent reconnect.
        wait_until(lambda: "unreachable" in err.read_text(), timeout=30, message="no notice")
        own_redis.restart()
        out, _ = producer.communicate(timeout=120)
        assert producer.returncode == 0, err.read_text()
    printed = out.split()
    assert len(printed) == BULK
    # At least once: every reported job is queued (a chunk whose reply was lost in the restart
    # may be queued twice; none is missing).
    assert set(printed) <= set(_queued_ids(own_redis))


def test_past_the_window_a_bulk_submit_exits_1_and_prints_what_went_in(
    tmp_path: Path, own_redis: RedisServer
):
    jobs = _jobs_file(tmp_path / "jobs.jsonl", BULK)
    with _jobq_submit(jobs, redis_url=own_redis.url, retry_for=1) as (producer, err):
        _stop_mid_submit(own_redis, producer)
        out, _ = producer.communicate(timeout=60)
        assert producer.returncode == 1
    text = " ".join(err.read_text().split())
    assert "cannot reach Redis at redis://:***@127.0.0.1" in text
    assert "not submitted (Redis unreachable)" in text
    own_redis.restart()
    printed, queued = out.split(), set(_queued_ids(own_redis))
    # Every id printed is in Redis, and Redis holds nothing more than the batch that was in
    # flight when it stopped (sent, but its reply lost: not reported as submitted).
    assert 1000 <= len(printed) < BULK
    assert set(printed) <= queued
    assert len(queued - set(printed)) <= 500


@pytest.mark.integration
def test_with_no_redis_it_gives_up_after_the_window_with_exit_1(tmp_path: Path):
    url = f"redis://:pw@127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    with _jobq_submit(_jobs_file(tmp_path / "one.jsonl", 1), redis_url=url, retry_for=1.5) as (
        producer,
        err,
    ):
        out, _ = producer.communicate(timeout=60)
        assert producer.returncode == 1
    assert time.monotonic() - started >= 1.5  # it did wait out the window
    assert out.strip() == ""  # no id for a job that was never sent
    text = " ".join(err.read_text().split())
    assert "retrying for up to" in text
    assert "cannot reach Redis at redis://:***@127.0.0.1" in text


def test_a_wrong_password_is_refused_at_once_not_retried(tmp_path: Path, own_redis: RedisServer):
    url = f"redis://:not-the-password@127.0.0.1:{own_redis.port}/0"
    with _jobq_submit(_jobs_file(tmp_path / "one.jsonl", 1), redis_url=url, retry_for=60) as (
        producer,
        err,
    ):
        out, _ = producer.communicate(timeout=30)  # far less than the 60 s window
        assert producer.returncode == 1
    text = err.read_text()
    assert "retrying" not in text
    assert "cannot reach Redis" in text
    assert out.strip() == ""
    assert own_redis.client().llen("io") == 0
