"""Shared fixtures: a real redis-server on a free port, real `jobq worker` processes, a site.

The Redis server is started in ``pytest_configure``, before any test module imports the Celery
app, so ``REDIS_URL`` points every producer in this process and every worker it starts at the
test server. Each test begins with an empty database. Nothing here fakes Redis or Celery.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ops.local_site import LocalSite, serve_local_site
from ops.processes import WorkerProcess, start_worker
from ops.redis_server import RedisServer, start_redis

_server: RedisServer | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _server
    data_dir = Path(tempfile.mkdtemp(prefix="jobq-test-redis-"))
    _server = start_redis(data_dir=data_dir)
    os.environ["REDIS_URL"] = _server.url
    # The fault-injection jobs (crash a process, write a file) exist only where this is set.
    os.environ["JOBQ_FAULT_JOBS"] = "1"
    # Quieter workers in tests, and short time limits so a stuck job cannot stall the suite.
    os.environ.setdefault("JOBQ_LOG_LEVEL", "INFO")


def pytest_unconfigure(config: pytest.Config) -> None:
    if _server is not None:
        _server.stop()


@pytest.fixture(scope="session")
def redis_server() -> RedisServer:
    assert _server is not None
    return _server


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Any:
    """A client on an empty database."""
    client = redis_server.client()
    client.flushall()
    return client


@pytest.fixture
def workers(redis_client: Any, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real ``jobq worker`` processes; all are stopped (then killed) after the test."""
    started: list[WorkerProcess] = []

    def start(pool: str, *, ready: bool = True, env: dict[str, str] | None = None, **kw: Any):
        worker = start_worker(
            pool, env={**os.environ, **(env or {})}, log_dir=tmp_path / "logs", **kw
        )
        started.append(worker)
        if ready:
            worker.wait_ready(timeout=60)
        return worker

    yield start
    # Killed, not warm-stopped: the next test starts on a flushed Redis, so nothing a worker
    # holds matters any more, and an idle warm shutdown costs 3-8 s per worker across ~100
    # workers. Tests of orderly shutdown signal their workers themselves and assert on it.
    for worker in started:
        worker.kill()  # the main process and its children, whatever state they are in


@pytest.fixture(scope="session")
def local_site() -> Iterator[LocalSite]:
    with serve_local_site() as site:
        yield site
