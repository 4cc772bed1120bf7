"""jobq's pytest plugin (jobq/testing.py), used the way a user's project uses it.

Each test writes a small project into a temporary directory, outside the repository, and runs
pytest on it in a fresh process: the plugin is loaded by its ``pytest11`` entry point, as in a
user's virtualenv. tests/test_example_project.py runs the example project's tests the same way.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

JOBS = """
from jobq import cpu_job

@cpu_job
def total(amounts: list[int]) -> int:
    return sum(amounts)
"""
# The brief's own example of a user's test, and one that must fail.
USER_TESTS = """
from jobq import submit

def test_total(jobq_worker):
    jobq_worker("cpu", concurrency=1)
    assert submit("total", amounts=[1, 2]).get(timeout=30) == 3

def test_total_wrong(jobq_worker):
    jobq_worker("cpu", concurrency=1)
    assert submit("total", amounts=[1, 2]).get(timeout=30) == 4
"""
# The job modules from a fixture of the project's conftest instead of the ini option.
CONFTEST = """
import pytest

@pytest.fixture(scope="session")
def jobq_job_modules():
    return ["shop.jobs"]
"""


def run_pytest(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def write_project(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_plugin_is_registered_for_pytest():
    plugins = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert plugins.get("jobq") == "jobq.testing", "reinstall jobq: make install-test"


def test_a_users_test_of_their_job_runs_on_a_real_worker_and_can_fail(tmp_path, redis_client):
    project = write_project(
        tmp_path,
        {
            "shop/__init__.py": "",
            "shop/jobs.py": JOBS,
            "tests/conftest.py": CONFTEST,
            "tests/test_total.py": USER_TESTS,
            # No install: the project is importable from its root, as pytest's pythonpath says.
            "pytest.ini": "[pytest]\npythonpath = .\n",
        },
    )

    run = run_pytest(project)

    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-2000:]
    assert re.search(r"\b1 failed, 1 passed\b", run.stdout), run.stdout[-3000:]
    assert "assert 3 == 4" in run.stdout
    # The failed test's report shows its worker's log, which names the job it ran.
    assert re.search(r"jobq worker cpu-\S+ log", run.stdout), run.stdout[-3000:]
    assert "total" in run.stdout.split("jobq worker cpu-", 1)[1]
    # This suite's REDIS_URL was in the environment: the plugin used its own Redis instead.
    assert redis_client.keys("*") == []


@pytest.mark.integration  # pytest in a fresh process
def test_the_plugin_starts_nothing_for_tests_that_do_not_ask(tmp_path):
    project = write_project(
        tmp_path,
        {
            "test_plain.py": (
                "import os\n"
                "def test_plain(tmp_path):\n"
                "    assert os.environ.get('REDIS_URL') == 'redis://nowhere.invalid:1/0'\n"
                "    assert 'JOBQ_JOBS' not in os.environ\n"
            ),
        },
    )
    env_run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--basetemp", "tmp"],
        cwd=project,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "JOBQ_"))},
            "REDIS_URL": "redis://nowhere.invalid:1/0",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert env_run.returncode == 0, env_run.stdout[-2000:] + env_run.stderr[-2000:]
    # jobq_redis keeps its server's data under the session's --basetemp: nothing there.
    assert (project / "tmp").is_dir()
    assert not list((project / "tmp").rglob("jobq-redis*")), "a redis-server was started"


@pytest.mark.integration  # pytest-xdist in fresh processes
def test_each_xdist_process_gets_its_own_redis(tmp_path):
    write_project(
        tmp_path,
        {
            f"test_{name}.py": (
                "import os\n"
                f"def test_{name}(jobq_redis_client):\n"
                f"    jobq_redis_client.set('mine', '{name}')\n"
                f"    open('{name}.url', 'w').write(os.environ['REDIS_URL'])\n"
                f"    assert jobq_redis_client.get('mine') == '{name}'\n"
            )
            for name in ("a", "b")
        },
    )

    run = run_pytest(tmp_path, "-n", "2")

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    urls = {(tmp_path / f"{name}.url").read_text() for name in ("a", "b")}
    assert len(urls) == 2, urls
