"""The command line as a user runs it: submit, bulk submit, --wait, status, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from ops.cli import main
from producers.handle import JobHandle
from tests.waiting import wait_until

UUID_LENGTH = 36


def jobq(*args: str, stdin: str | None = None, env: dict[str, str] | None = None, timeout=120):
    """Run the real ``jobq`` command (this interpreter's) and capture what a user would see."""
    return subprocess.run(
        [sys.executable, "-m", "ops", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        check=False,
    )


def test_submit_prints_the_job_id_and_the_job_runs(workers):
    workers("io", concurrency=5)

    done = jobq("submit", "io_wait", "ms=20")

    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    assert len(job_id) == UUID_LENGTH
    assert JobHandle(job_id, "io_wait", "io").get(timeout=30)["ms"] == 20


def test_submit_wait_json_prints_the_result(workers):
    workers("cpu", concurrency=1)

    done = jobq("submit", "analyze_text", "text=Queues wait. Workers compute!", "--wait", "--json")

    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    assert outcome["state"] == "SUCCESS"
    assert outcome["job"] == "analyze_text"
    assert outcome["result"]["words"] == 4
    assert outcome["result"]["sentences"] == 2


def test_json_values_with_colon_equals(workers):
    workers("io", concurrency=2)

    done = jobq("submit", "io_wait", "ms:=15", "--wait", "--json")

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"]["ms"] == 15


def test_a_failing_job_exits_1_with_its_error(workers, local_site):
    workers("io", concurrency=2)

    done = jobq("submit", "fetch_url", f"url={local_site.url('/bytes/4096')}", "max_bytes=100",
                "--wait")  # fmt: skip

    assert done.returncode == 1
    assert "FAILURE" in done.stderr
    assert "max_bytes" in done.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("submit", "no_such_job"), "unknown job 'no_such_job'"),
        (("submit", "io_wait", "ms=soon"), "ms: Input should be a valid integer"),
        (("submit", "io_wait"), "ms: required argument is missing"),
        (("submit", "io_wait", "ms=1", "colour=red"), "colour: unknown argument"),
        (("submit", "io_wait", "ms"), "expected key=value"),
        (("submit", "fetch_url", "url=file:///etc/passwd"), "url: String should match pattern"),
    ],
)
def test_bad_input_exits_2_and_enqueues_nothing(redis_client, args, expected):
    # Usage errors need no process of their own: the command runs in this one (Click's runner).
    done = CliRunner().invoke(main, list(args), env={"COLUMNS": "200"})

    assert done.exit_code == 2, done.output
    assert expected in " ".join(done.stderr.split())
    assert redis_client.llen("io") == 0
    assert redis_client.llen("cpu") == 0


def test_the_console_script_reports_bad_input_with_exit_2_and_no_traceback(redis_client):
    done = jobq("submit", "io_wait", "ms=soon")

    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("error: invalid arguments for io_wait: ms: Input should be")
    assert "Traceback" not in done.stderr
    assert redis_client.llen("io") == 0


def test_bulk_file_reports_the_bad_line_by_number_and_submits_the_rest(workers, tmp_path: Path):
    lines = [json.dumps({"ms": 10 + i}) for i in range(10)]
    lines[6] = '{"ms": "soon"}'  # line 7
    jobs_file = tmp_path / "jobs.jsonl"
    jobs_file.write_text("\n".join(lines) + "\n")

    done = jobq("submit", "io_wait", "--file", str(jobs_file))

    assert done.returncode == 2
    assert "line 7:" in done.stderr
    assert "ms: Input should be a valid integer" in " ".join(done.stderr.split())
    ids = done.stdout.split()
    assert len(ids) == 9
    assert len(set(ids)) == 9
    workers("io", concurrency=10)
    results = [JobHandle(job_id, "io_wait", "io").get(timeout=30) for job_id in ids]
    assert sorted(r["ms"] for r in results) == [10 + i for i in range(10) if i != 6]


def test_bulk_from_stdin_with_wait_gives_every_result(workers):
    workers("cpu", concurrency=2)
    stdin = "\n".join(json.dumps({"ms": 1}) for _ in range(25)) + "\n\n# a comment\n"

    done = jobq("submit", "cpu_spin", "--file", "-", "--wait", "--json", stdin=stdin)

    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(rows) == 25
    assert {row["state"] for row in rows} == {"SUCCESS"}
    assert [row["line"] for row in rows] == list(range(1, 26))


def test_bulk_of_an_unknown_job_exits_2(redis_client):
    done = CliRunner().invoke(main, ["submit", "nope", "--file", "-"], input='{"a": 1}\n')

    assert done.exit_code == 2, done.output
    assert "unknown job" in done.stderr
    assert redis_client.llen("io") == 0
    assert redis_client.llen("cpu") == 0


def test_status_json_shows_queues_and_workers_per_pool(workers, redis_client):
    # Started side by side (each start-up is seconds), then each waited for.
    io_worker = workers("io", concurrency=7, ready=False)
    cpu_worker = workers("cpu", concurrency=1, ready=False)
    for worker in (io_worker, cpu_worker):
        worker.wait_ready(timeout=60)
    probe = uuid.uuid4().hex
    # One long job that keeps the only CPU process busy, then three that must wait.
    # 20 s: still running while `jobq status` starts and asks, on a loaded machine too.
    bulk = [{"ms": 20_000, "probe_name": probe}] + [{"ms": 1}] * 3
    submitted = jobq("submit", "cpu_spin", "--file", "-", stdin="\n".join(map(json.dumps, bulk)))
    assert submitted.returncode == 0, submitted.stderr
    wait_until(lambda: redis_client.get(f"jobq:probe:{probe}:current") == "1", timeout=30)

    done = jobq("status", "--json")

    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    pools = {w["name"]: w for w in status["workers"]}
    assert pools[io_worker.node_name]["pool"] == "gevent"
    assert pools[io_worker.node_name]["concurrency"] == 7
    assert pools[cpu_worker.node_name]["pool"] == "prefork"
    assert pools[cpu_worker.node_name]["queues"] == ["cpu"]
    assert status["queues"]["cpu"]["active"] == 1  # the long job is running
    # Multiplier 1, concurrency 1: the worker holds at most one more; the rest wait in Redis.
    assert status["queues"]["cpu"]["depth"] + status["queues"]["cpu"]["reserved"] == 3
    assert status["in_flight"] == 1


@pytest.mark.integration
def test_unreachable_redis_exits_1_with_a_clear_message():
    # JOBQ_PRODUCER_RETRY_FOR=0: fail at once (tests/test_producer_outage.py covers the window).
    env = {"REDIS_URL": "redis://:pw@127.0.0.1:1/0", "JOBQ_PRODUCER_RETRY_FOR": "0"}
    done = jobq("submit", "io_wait", "ms=1", env=env)

    assert done.returncode == 1
    assert "cannot reach Redis at redis://:***@127.0.0.1:1/0" in " ".join(done.stderr.split())
    assert "retrying" not in done.stderr
    assert "pw@" not in done.stderr
