"""Shared fixtures: a real redis-server on a free port, real `jobq worker` processes, a site.

The Redis server is started in ``pytest_configure``, before any test module imports the Celery
app, so ``REDIS_URL`` points every producer in this process and every worker it starts at the
test server. Under pytest-xdist every test process (``-n N``) starts a server of its own, on its
own port and data directory, so tests in different processes never see each other's queues;
the xdist controller, which runs no test, starts none. Each test begins with an empty database.
Nothing here fakes Redis or Celery.

A stuck job cannot stall the suite: every wait in the tests has a deadline (``tests/waiting.py``,
``get(timeout=...)``), every test has pytest-timeout's limit (pyproject.toml), and workers are
killed when their test (or module, for shared ones) ends. The workers keep the production time
limits, which some tests rely on; tests of time limits set them per message.

Tests that start processes or need Redis are marked ``integration`` here, from the fixtures
they use (``PROCESS_FIXTURES``); ``make test-fast`` runs the rest. Such a test that does not
use one of these fixtures must carry ``@pytest.mark.integration`` itself: a test without the
mark that starts a process fails and says so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ops.local_site import LocalSite, serve_local_site
from ops.processes import WorkerProcess, start_worker
from ops.redis_server import RedisServer, start_redis

_server: RedisServer | None = None

# Fixtures that start processes (redis-server, workers, Flower, a lab …) or need the session's
# Redis. Fixtures that depend on one of these are covered by it: ``item.fixturenames`` is the
# whole closure.
PROCESS_FIXTURES = frozenset(
    {
        "redis_server",
        "redis_client",
        "workers",
        "local_site",
        # Fixtures of test modules that start processes of their own.
        "own_redis",
        "tls_redis",
        "fault_lab",
        "compose_workers",
        # jobq's pytest plugin (jobq/testing.py); its other fixtures all depend on this one.
        "jobq_redis",
    }
)
# Module-scoped fixtures that start processes: the tests using one run in the same xdist
# process (``--dist loadgroup``), so the processes start once, not once per xdist process.
MODULE_PROCESS_FIXTURES = frozenset({"_module_workers", "compose_workers"})
# The guarantees that must hold on stock Celery/kombu code paths too: `make test` runs these
# modules a second time with JOBQ_FAST_PATHS=false (README, "Upgrading Celery and kombu").
# test_leases.py and test_ratelimit.py run once: the lease keeper, the Redis-clock sweep and the
# rate limiter are the same code with JOBQ_FAST_PATHS on or off (their tests took a minute and a
# half of the suite's second pass).
RELIABILITY_MODULES = frozenset(
    {
        "test_bad_messages.py",  # rejection of bad messages
        "test_poison_headers.py",  # bad header fields: refused once, their batch unharmed
        "test_dead_letters.py",  # dead letters, retries, the delivery limit
        "test_worker_death.py",  # leases: a dead worker's jobs come back, live ones are kept
        "test_redis_restart.py",  # nothing lost across a Redis restart
        "test_redis_blips.py",  # running jobs and dead letters survive a Redis restart
        "test_shutdown.py",  # warm shutdown
        "test_backpressure.py",  # the admission gate, a full Redis
        "test_redis_full.py",  # workers fetching from a full Redis lose nothing, keep running
        "test_submit_edges.py",  # a submit whose reply is lost, repeated with its key
        "test_delay.py",  # delayed jobs: in Redis until due, run once, on time, kills and all
    }
)


def _is_xdist_controller(config: pytest.Config) -> bool:
    """The process that hands tests to pytest-xdist's workers runs none itself."""
    return config.getoption("dist", default="no") != "no" and not hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    global _server
    if _is_xdist_controller(config):
        return
    # "gw0", "gw1" … under xdist; in the data dir's name so a leftover one says whose it was.
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    data_dir = Path(tempfile.mkdtemp(prefix=f"jobq-test-redis-{worker}-"))
    _server = start_redis(data_dir=data_dir)
    os.environ["REDIS_URL"] = _server.url
    # The fault-injection jobs (crash a process, write a file) exist only where this is set.
    os.environ["JOBQ_FAULT_JOBS"] = "1"
    # Quieter workers in tests.
    os.environ.setdefault("JOBQ_LOG_LEVEL", "INFO")


def pytest_unconfigure(config: pytest.Config) -> None:
    if _server is not None:
        _server.stop()
        shutil.rmtree(_server.data_dir, ignore_errors=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & PROCESS_FIXTURES:
            item.add_marker(pytest.mark.integration)
        if fixtures & MODULE_PROCESS_FIXTURES:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
        if item.path.name in RELIABILITY_MODULES:
            item.add_marker(pytest.mark.reliability)


@pytest.fixture(autouse=True)
def _unit_tests_start_no_process(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test not marked ``integration`` must not start a process: it would run in the fast tier."""
    if request.node.get_closest_marker("integration"):
        yield
        return
    original = subprocess.Popen.__init__

    def refuse(self: Any, args: Any, *rest: Any, **kw: Any) -> None:
        self._child_created = False  # read by Popen.__del__ on this half-made object
        raise AssertionError(
            f"{request.node.nodeid} starts a process ({args!r}) but is not marked integration: "
            "use a process fixture or @pytest.mark.integration (see tests/conftest.py)"
        )

    subprocess.Popen.__init__ = refuse  # type: ignore[method-assign]
    try:
        yield
    finally:
        subprocess.Popen.__init__ = original  # type: ignore[method-assign]


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


@pytest.fixture(scope="module")
def _module_workers(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., WorkerProcess]]:
    """Workers started once per module and per set of arguments; see ``shared_workers``."""
    started: dict[tuple[Any, ...], WorkerProcess] = {}
    log_dir = tmp_path_factory.mktemp("shared-workers")

    def start(pool: str, **kw: Any) -> WorkerProcess:
        key = (pool, tuple(sorted(kw.items())))
        worker = started.get(key)
        if worker is None:
            worker = start_worker(pool, env=dict(os.environ), log_dir=log_dir, **kw)
            started[key] = worker
            worker.wait_ready(timeout=60)
        # A shared worker that died would make every later test of the module fail obscurely.
        assert worker.alive(), f"shared worker {worker.node_name} died:\n{worker.log_tail()}"
        return worker

    yield start
    for worker in started.values():
        worker.kill()


@pytest.fixture
def shared_workers(
    _module_workers: Callable[..., WorkerProcess], redis_client: Any
) -> Callable[..., WorkerProcess]:
    """``workers`` for modules whose tests only submit jobs and read what the workers did.

    ``shared_workers("io", concurrency=10)`` starts that worker at its first call in the module
    and returns the same process to every later test asking for the same arguments, which saves
    a worker start-up per test. Each test still begins on an empty database: a worker keeps
    consuming, storing results and answering control commands after a FLUSHALL
    (tests/test_shared_workers.py checks it). Do not use it for tests that change a worker
    (pause it, kill it, set its environment or limits, count what it has processed), that
    depend on which workers exist, or in a module where another test must find its queue
    unconsumed: the shared workers live until the module's last test has run.
    """
    return _module_workers


@pytest.fixture
def fault_lab(tmp_path: Path) -> Iterator[Any]:
    """A fault lab (ops/faults/lab.py): its own redis-server, workers with a short lease."""
    # Imported here, after pytest_configure: the lab registers the fault-injection jobs.
    from ops.faults.lab import lab

    with lab(tmp_path) as running:
        yield running


@pytest.fixture(scope="session")
def local_site() -> Iterator[LocalSite]:
    with serve_local_site() as site:
        yield site
