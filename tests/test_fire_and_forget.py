"""Fire and forget (``ignore_result=True`` / ``jobq submit --no-result``): no result is stored.

The job still runs and its record says how it ended; a normal submit beside it does store its
result, so the check that the key is missing can fail. Pipelines and ``--wait`` refuse it.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from ops.cli import main
from producers import submit, submit_many
from workers.stores.job_records import read_records

from .waiting import wait_until

RESULT_KEY = "celery-task-meta-"


def _finished(ids: list[str]) -> bool:
    return all(record.get("state") == "SUCCESS" for record in read_records(ids))


def test_jobs_run_and_store_no_result_while_a_normal_job_does(workers, redis_client):
    workers("io", concurrency=10)
    forgotten = submit_many("io_wait", [{"ms": 1}] * 20, ignore_result=True)
    one = submit("io_wait", ms=1, ignore_result=True)
    kept = submit("io_wait", ms=1)
    ids = [handle.id for handle in [*forgotten, one, kept]]

    wait_until(lambda: _finished(ids), timeout=30, message="jobs did not finish")

    assert kept.get(timeout=10)["ms"] == 1
    assert redis_client.exists(RESULT_KEY + kept.id) == 1
    assert [redis_client.exists(RESULT_KEY + job_id) for job_id in ids[:-1]] == [0] * 21
    with pytest.raises(RuntimeError, match="fire and forget"):
        one.get(timeout=1)


def test_a_repeat_with_the_same_key_knows_the_job_has_no_result(redis_client):
    first = submit("io_wait", ms=1, key="nightly", ignore_result=True)
    again = submit("io_wait", ms=1, key="nightly")

    assert again.id == first.id
    assert again.ignore_result  # the first submit decided: waiting on it would never end
    with pytest.raises(RuntimeError, match="fire and forget"):
        again.get(timeout=1)


def test_a_pipeline_cannot_be_fire_and_forget(redis_client):
    with pytest.raises(ValueError, match="pipeline"):
        submit("fetch_and_analyze", url="http://127.0.0.1:9/", ignore_result=True)
    assert redis_client.llen("io") == 0


def _jobq(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ops", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
    )


def test_cli_no_result_prints_the_id_and_the_job_runs_without_a_result(workers, redis_client):
    workers("io", concurrency=2)
    done = _jobq("submit", "io_wait", "ms=1", "--no-result")

    assert done.returncode == 0, done.stderr
    (job_id,) = done.stdout.split()
    wait_until(lambda: _finished([job_id]), timeout=30, message="the job did not finish")
    assert redis_client.exists(RESULT_KEY + job_id) == 0


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("io_wait", "ms=1", "--no-result", "--wait"), "nothing to --wait for"),
        (("fetch_and_analyze", "url=http://127.0.0.1:9/", "--no-result"), "is a pipeline"),
    ],
)
def test_cli_no_result_refuses_wait_and_pipelines(redis_client, args, expected):
    # A usage error: the command runs in this process (Click's runner), no process needed.
    done = CliRunner().invoke(main, ["submit", *args], env={"COLUMNS": "200"})

    assert done.exit_code == 2, done.output
    assert expected in " ".join(done.stderr.split())
    assert redis_client.llen("io") == 0
