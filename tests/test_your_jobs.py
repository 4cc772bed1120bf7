"""A project's own jobs: declared in its package outside jobq, named in JOBQ_JOBS or --jobs.

The project is a package written to a temporary directory outside the repository, importable
only through ``PYTHONPATH`` (or the current directory), as a user's would be. Its jobs run on
real ``jobq worker`` processes; a module that fails to import, or a job name declared twice,
stops a worker at start with one line and exit status 2, and so do ``jobq up``, ``jobq jobs``
and ``jobq submit``; the library's ``submit`` raises a :class:`jobq.JobLoadError`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import jobq
from ops.processes import WorkerProcess
from ops.stack import Stack, StackConfig
from workers import registry
from workers.settings import get_settings

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "tallyapp"

# The project's modules: good jobs, a clash with them, a clash with a shipped job, and modules
# that fail to import in the three ways a user's can.
MODULES = {
    "__init__.py": "",
    "jobs.py": '''
"""tallyapp's jobs: one for each pool."""

import gevent

from jobq import cpu_job, io_job


@io_job
def tally_words(text: str) -> dict:
    """Count the words of a text, yielding like a job waiting on the network."""
    gevent.sleep(0.01)
    return {"words": len(text.split()), "module": __name__}


@cpu_job
def tally_sum(numbers: list[float]) -> dict:
    """Add numbers up."""
    return {"total": sum(numbers), "module": __name__}
''',
    "clash.py": """
from jobq import cpu_job


@cpu_job
def tally_sum(numbers: list[int]) -> int:
    return 0
""",
    "shadow.py": """
from jobq import io_job


@io_job
def fetch_url(url: str) -> str:
    return url
""",
    "broken.py": """
from jobq import io_job

raise RuntimeError("cannot reach the billing database")
""",
    "syntax.py": "def tally(:\n    pass\n",
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's directory (holding the ``tallyapp`` package), outside the repository."""
    root = tmp_path_factory.mktemp("project")
    assert ROOT not in root.parents
    (root / PACKAGE).mkdir()
    for name, text in MODULES.items():
        (root / PACKAGE / name).write_text(text.lstrip())
    return root


def project_env(project: Path, jobs: str | None = None) -> dict[str, str]:
    """The environment of a process of the project: its package importable, its jobs named."""
    path = os.pathsep.join(p for p in (str(project), os.environ.get("PYTHONPATH")) if p)
    return {"PYTHONPATH": path, **({"JOBQ_JOBS": jobs} if jobs else {})}


def jobq_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    """Run the real ``jobq`` command with this interpreter; what a user would see."""
    return subprocess.run(
        [sys.executable, "-m", "ops", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        cwd=cwd,
        check=False,
    )


@pytest.fixture
def as_project_producer(project: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This test process as one of the project's producers: package importable, JOBQ_JOBS set."""
    monkeypatch.syspath_prepend(str(project))
    monkeypatch.setenv("JOBQ_JOBS", f"{PACKAGE}.jobs")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()  # the next read sees the environment monkeypatch restores


# --- the project's jobs run on real workers -----------------------------------------------------


def test_the_projects_jobs_run_on_real_workers_of_both_pools(
    workers: Callable[..., WorkerProcess], project: Path, as_project_producer: None
):
    # One worker named its jobs through JOBQ_JOBS, the other with --jobs.
    io = workers("io", concurrency=5, ready=False, env=project_env(project, f"{PACKAGE}.jobs"))
    cpu = workers("cpu", concurrency=1, ready=False, env=project_env(project),
                  extra=("--jobs", f"{PACKAGE}.jobs"))  # fmt: skip
    io.wait_ready(timeout=60)
    cpu.wait_ready(timeout=60)

    words = jobq.submit("tally_words", text="queues wait while workers compute")
    total = jobq.submit("tally_sum", numbers=[1.5, "2.5", 3])  # "2.5": the schema converts it

    assert words.queue == "io"
    assert total.queue == "cpu"
    assert words.get(timeout=30) == {"words": 5, "module": "tallyapp.jobs"}
    assert total.get(timeout=30) == {"total": 7.0, "module": "tallyapp.jobs"}


@pytest.mark.usefixtures("as_project_producer")
def test_submit_checks_arguments_against_the_projects_schema(redis_client: Any):
    with pytest.raises(jobq.InvalidArguments, match="numbers"):
        jobq.submit("tally_sum", numbers="not a list")
    with pytest.raises(jobq.InvalidArguments, match="language: unknown argument"):
        jobq.submit("tally_words", text="a b", language="en")

    assert redis_client.llen("cpu") == 0
    assert redis_client.llen("io") == 0


# --- a bad job module or a clash stops a worker at start: one line, exit 2 ----------------------


@pytest.mark.parametrize(
    ("pool", "jobs", "line"),
    [
        pytest.param(
            "io",
            "tallyapp.missing",
            "error: cannot load job module 'tallyapp.missing': "
            "ModuleNotFoundError: No module named 'tallyapp.missing'",
            id="missing-module",
        ),
        pytest.param(
            "cpu",
            "tallyapp.broken",
            "error: cannot load job module 'tallyapp.broken': "
            "RuntimeError: cannot reach the billing database (at {project}/tallyapp/broken.py:3)",
            id="module-raises",
        ),
        pytest.param(
            "cpu",
            "tallyapp.jobs,tallyapp.clash",
            "error: job 'tally_sum' is declared twice: by tallyapp.jobs.tally_sum and by "
            "tallyapp.clash.tally_sum (job names must be unique)",
            id="two-modules-clash",
        ),
        pytest.param(
            "io",
            "tallyapp.shadow",
            "error: job 'fetch_url' is declared twice: by workers.jobs.http.fetch_url and by "
            "tallyapp.shadow.fetch_url (job names must be unique; 'fetch_url' is a job shipped "
            "with jobq, rename yours)",
            id="shipped-name-clash",
        ),
    ],
)
def test_a_worker_with_bad_jobs_exits_2_with_one_line(
    workers: Callable[..., WorkerProcess], project: Path, pool: str, jobs: str, line: str
):
    worker = workers(pool, ready=False, env=project_env(project, jobs))

    code = worker.process.wait(timeout=60)

    log = worker.log_tail(chars=10_000)
    assert code == 2, log
    assert log.strip().splitlines() == [line.format(project=project)]  # and no traceback


@pytest.mark.integration
def test_celery_run_directly_exits_2_with_one_line(project: Path):
    # `celery -A workers.app worker`, as a user who skips `jobq worker` runs it, from the
    # project's directory: Celery's own import path finds the package there.
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-P", "solo"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "JOBQ_JOBS": "tallyapp.jobs,tallyapp.clash"},
        cwd=project,
        check=False,
    )

    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "error: job 'tally_sum' is declared twice: by tallyapp.jobs.tally_sum and by "
        "tallyapp.clash.tally_sum (job names must be unique)"
    ]


# --- the command line: jobq jobs, jobq submit, jobq up -------------------------------------------


@pytest.mark.integration
def test_jobq_jobs_lists_the_projects_jobs_from_its_directory(project: Path):
    done = jobq_cli("jobs", "--jobs", f"{PACKAGE}.jobs", cwd=project)

    assert done.returncode == 0, done.stderr
    rows = {line.split("│")[1].strip(): line for line in done.stdout.splitlines() if "│" in line}
    assert "numbers: list" in rows["tally_sum"]
    assert "cpu" in rows["tally_sum"]
    assert "io" in rows["tally_words"]
    assert "fetch_url" in rows  # next to jobq's own


@pytest.mark.parametrize(
    ("args", "line"),
    [
        pytest.param(
            ("jobs", "--jobs", "tallyapp.syntax"),
            "error: cannot load job module 'tallyapp.syntax': "
            "SyntaxError: invalid syntax (at {project}/tallyapp/syntax.py:1)",
            id="jobs-syntax-error",
        ),
        pytest.param(
            ("submit", "tally_sum", "numbers:=[1]", "--jobs", "tallyapp.jobs,tallyapp.clash"),
            "error: job 'tally_sum' is declared twice: by tallyapp.jobs.tally_sum and by "
            "tallyapp.clash.tally_sum (job names must be unique)",
            id="submit-clash",
        ),
        pytest.param(
            ("submit", "tally_sum", 'numbers:="ten"', "--jobs", "tallyapp.jobs"),
            "error: invalid arguments for tally_sum: numbers: Input should be a valid list",
            id="submit-invalid-arguments",
        ),
        pytest.param(
            ("jobs", "--jobs", "tally-app.jobs"),
            "error: bad setting JOBQ_JOBS: 'tally-app.jobs' is not a dotted module name "
            "(like myapp.jobs)",
            id="bad-module-name",
        ),
    ],
)
def test_the_command_line_says_one_line_and_exits_2(
    project: Path, redis_client: Any, args: tuple[str, ...], line: str
):
    done = jobq_cli(*args, env=project_env(project))

    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [line.format(project=project)]
    assert done.stdout == ""
    assert redis_client.llen("cpu") == 0  # nothing submitted


@pytest.mark.integration
def test_jobq_up_with_a_bad_job_module_starts_nothing(project: Path, tmp_path: Path):
    data_dir = tmp_path / "stack"

    done = jobq_cli(
        "up", "--jobs", "tallyapp.broken", "--data-dir", str(data_dir), "--no-flower",
        env=project_env(project),
    )  # fmt: skip

    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.splitlines() == [
        f"error: cannot load job module 'tallyapp.broken': RuntimeError: cannot reach the "
        f"billing database (at {project}/tallyapp/broken.py:3)"
    ]
    assert not data_dir.exists()  # no Redis, no worker, no Flower was started


def test_jobq_up_gives_other_terminals_the_same_jobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # `jobq up --jobs` set JOBQ_JOBS in its environment; `source .jobq/env` must carry it on, or a
    # producer in another terminal would not know the jobs its workers run.
    monkeypatch.setenv("JOBQ_JOBS", "tallyapp.jobs,billing.jobs")
    stack = Stack(StackConfig(data_dir=tmp_path, flower_port=None, redis_url="redis://x:6379/0"))

    lines = stack.write_env_file().read_text().splitlines()

    assert "export JOBQ_JOBS=tallyapp.jobs,billing.jobs" in lines


# --- the library: submit raises a clear exception ------------------------------------------------


def test_submit_raises_job_load_error_for_a_bad_job_module(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("JOBQ_JOBS", "tallyapp_not_installed.jobs")
    get_settings.cache_clear()
    try:
        with pytest.raises(jobq.JobModuleError) as raised:
            jobq.submit("io_wait", ms=1)
    finally:
        get_settings.cache_clear()

    assert isinstance(raised.value, jobq.JobLoadError)
    assert raised.value.module == "tallyapp_not_installed.jobs"
    assert str(raised.value) == (
        "cannot load job module 'tallyapp_not_installed.jobs': "
        "ModuleNotFoundError: No module named 'tallyapp_not_installed'"
    )


# --- the registry refuses a second declaration of a name ----------------------------------------


@pytest.fixture
def fresh_name() -> Iterator[str]:
    """A job name no other test uses, forgotten by the registry after the test."""
    name = "tally_registry_probe"
    yield name
    registry.JOBS.pop(name, None)
    registry._DECLARED_BY.pop(name, None)


def _function(module: str, name: str = "total") -> Callable[..., Any]:
    def total(numbers: list[float]) -> float:
        return sum(numbers)

    total.__module__, total.__name__, total.__qualname__ = module, name, name
    return total


def test_a_name_declared_twice_is_refused_naming_both(fresh_name: str):
    first = jobq.cpu_job(_function("myapp.jobs"), name=fresh_name)

    with pytest.raises(jobq.DuplicateJob) as raised:
        jobq.io_job(_function("billing.jobs"), name=fresh_name)

    assert raised.value.modules == ("myapp.jobs", "billing.jobs")
    assert "by myapp.jobs.total and by billing.jobs.total" in str(raised.value)
    assert registry.JOBS[fresh_name].task is first  # the first declaration still holds
    assert registry.JOBS[fresh_name].kind == "cpu"


def test_a_module_imported_again_declares_its_jobs_again(fresh_name: str):
    # A failed import retried, or importlib.reload: the same function, not a clash.
    jobq.pipeline(_function("myapp.jobs", fresh_name))
    jobq.pipeline(_function("myapp.jobs", fresh_name))

    assert registry.JOBS[fresh_name].kind == "pipeline"


# --- the docs ------------------------------------------------------------------------------------


def test_the_docs_name_exactly_the_top_level_packages_jobq_installs():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    installed = {pattern.rstrip("*") for pattern in include}
    page = (ROOT / "docs" / "your-jobs.md").read_text()

    sentence = re.search(r"installs these top-level packages: ([^.]*)\.", page)

    assert sentence, "docs/your-jobs.md must list the top-level packages jobq installs"
    assert set(re.findall(r"`(\w+)`", sentence.group(1))) == installed


def test_the_readme_tour_links_the_page():
    assert "(docs/your-jobs.md)" in (ROOT / "README.md").read_text()
