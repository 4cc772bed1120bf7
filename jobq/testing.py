"""jobq's pytest plugin: test your own jobs against a real Redis and real ``jobq worker``\\ s.

Installed with jobq and loaded by pytest on its own (the ``pytest11`` entry point ``jobq``);
nothing starts until a test asks for one of these fixtures:

- ``jobq_redis`` (session): a private ``redis-server`` on a free port of 127.0.0.1, its data in
  pytest's temporary directory, stopped when the session ends. Under pytest-xdist each test
  process gets its own.
- ``jobq_job_modules`` (session): your job modules, from the ``jobq_jobs`` ini option;
  override the fixture in a ``conftest.py`` to compute them instead.
- ``jobq_env`` (session): points this process and every worker it starts at that Redis and at
  your job modules (``REDIS_URL``, ``JOBQ_JOBS``); restored when the session ends.
- ``jobq_redis_client`` (function): a redis-py client on that server, database emptied.
- ``jobq_worker`` (function): a factory starting a real ``jobq worker io|cpu`` that loads your
  job modules; each test starts on an empty database and its workers are killed at teardown.

Example (``pyproject.toml``: ``[tool.pytest.ini_options] jobq_jobs = ["invoices.jobs"]``)::

    from jobq import submit

    def test_total(jobq_worker):
        jobq_worker("cpu")
        assert submit("total", amounts=[1, 2]).get(timeout=30) == 3

Fixture names all start with ``jobq_``, so they never clash with a project's own ``workers`` or
``redis_server`` fixtures. See docs/testing-your-jobs.md.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # ops is imported when a fixture runs, not when pytest loads the plugin
    from ops.processes import WorkerProcess
    from ops.redis_server import RedisServer

INI_JOBS = "jobq_jobs"
# The workers a test started, so its failure report can show their logs.
_STARTED: pytest.StashKey[list[WorkerProcess]] = pytest.StashKey()
# Variables this plugin sets for the session; their previous values come back at its end.
_ENV_NAMES = ("REDIS_URL", "JOBQ_JOBS", "PYTHONPATH")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        INI_JOBS,
        type="args",
        default=[],
        help="jobq: your job modules (dotted names), loaded by jobq_worker's workers and submit()",
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed test that started workers shows the end of each worker's log."""
    report = yield
    if report.failed and report.when == "call":
        for worker in item.stash.get(_STARTED, []):
            report.sections.append((f"jobq worker {worker.node_name} log", worker.log_tail()))
    return report


@pytest.fixture(scope="session")
def jobq_job_modules(pytestconfig: pytest.Config) -> list[str]:
    """The job modules workers and producers load: the ``jobq_jobs`` ini option.

    Override it in a ``conftest.py`` when a list in the ini file does not fit::

        @pytest.fixture(scope="session")
        def jobq_job_modules():
            return ["invoices.jobs", "invoices.reports"]
    """
    return [name for entry in pytestconfig.getini(INI_JOBS) for name in entry.split(",") if name]


@pytest.fixture(scope="session")
def jobq_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private, real ``redis-server`` for this test session (this xdist process)."""
    from ops.redis_server import start_redis

    server = start_redis(data_dir=tmp_path_factory.mktemp("jobq-redis"))
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def jobq_env(
    jobq_redis: RedisServer, jobq_job_modules: list[str], pytestconfig: pytest.Config
) -> Iterator[dict[str, str]]:
    """Point this process, and the workers it starts, at ``jobq_redis`` and your job modules.

    Returns the variables set. ``submit()`` in a test then enqueues on the private Redis and
    validates arguments against your jobs' schemas.
    """
    previous = {name: os.environ.get(name) for name in _ENV_NAMES}
    values = {
        "REDIS_URL": jobq_redis.url,
        "JOBQ_JOBS": ",".join(jobq_job_modules),
        # Workers import what the tests import: the directories pytest (or your ini's
        # ``pythonpath``) put on sys.path, not only an installed package.
        "PYTHONPATH": os.pathsep.join(_importable_dirs(pytestconfig)),
    }
    os.environ.update(values)
    _forget_cached_settings()
    try:
        yield values
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _forget_cached_settings()


@pytest.fixture
def jobq_redis_client(jobq_env: dict[str, str], jobq_redis: RedisServer) -> Any:
    """A redis-py client (strings decoded) on the private Redis, its database emptied."""
    client = jobq_redis.client()
    client.flushall()
    return client


@pytest.fixture
def jobq_worker(
    jobq_redis_client: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real ``jobq worker io|cpu`` processes loading your job modules.

    ``jobq_worker("cpu")`` returns once the worker answers a ping; ``concurrency=``, ``env=``
    (extra variables), ``ready=False`` and ``start_worker``'s other options pass through. Its
    log is ``tmp_path/jobq-logs/``; a worker that exits at start fails the test with the log's
    tail, and a failed test's report ends with each of its workers' logs. Every worker started
    is killed at teardown (the next test starts on an empty database, so nothing it held
    matters).
    """
    from ops.processes import start_worker

    started: list[WorkerProcess] = []
    request.node.stash[_STARTED] = started

    def start(
        pool: str, *, ready: bool = True, env: dict[str, str] | None = None, **options: Any
    ) -> WorkerProcess:
        worker = start_worker(
            pool, env={**os.environ, **(env or {})}, log_dir=tmp_path / "jobq-logs", **options
        )
        started.append(worker)
        if ready:
            worker.wait_ready(timeout=60)
        return worker

    yield start
    for worker in started:
        worker.kill()


def _importable_dirs(config: pytest.Config) -> list[str]:
    """This process's import path minus the interpreter's own directories, then PYTHONPATH."""
    own = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    found: list[str] = []
    for entry in [str(config.rootpath), *sys.path]:
        path = Path(entry or os.getcwd()).resolve()
        if path.is_dir() and not any(path.is_relative_to(p) for p in own):
            found.append(str(path))
    found += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return list(dict.fromkeys(found))


def _forget_cached_settings() -> None:
    # Settings, the Redis client and the Celery app are built once per process, on first use
    # (a job module's import already reads the settings): drop them so they are rebuilt from
    # the environment just set. Nothing has connected through them to the private Redis yet.
    from workers.app import get_app
    from workers.settings import get_settings
    from workers.stores.client import get_redis

    get_settings.cache_clear()
    get_redis.cache_clear()
    get_app.cache_clear()
