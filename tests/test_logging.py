"""Every log line of a job carries its context; a correlation id follows a pipeline."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from ops.faults.messages import envelope, task_body, task_headers
from ops.processes import WorkerProcess, jobq_argv
from producers import submit
from tests.waiting import wait_until
from workers.correlation import InvalidCorrelationId, correlation
from workers.logsafe import MAX_LENGTH, one_line
from workers.stores.dead_letters import list_dead
from workers.stores.job_records import read_records

# Celery's per-job lines ("Task … received/succeeded") are off by default for speed
# (workers/features/job_logs.py); the shipped jobs log nothing else, so turn them on to have
# lines to check.
PER_JOB_LINES = {"JOBQ_LOG_EACH_JOB": "true"}


def log_lines_of(worker: WorkerProcess, job_id: str) -> list[str]:
    assert worker.log_path is not None
    return [line for line in worker.log_path.read_text().splitlines() if job_id in line]


def test_a_correlation_id_given_at_submit_reaches_every_step_of_a_pipeline(workers, local_site):
    io_worker = workers("io", concurrency=5, env=PER_JOB_LINES)
    cpu_worker = workers("cpu", concurrency=1, env=PER_JOB_LINES)

    # The way a user does it: the command line, in its own process.
    submitted = subprocess.run(
        jobq_argv(
            "submit",
            "fetch_and_analyze",
            f"url={local_site.url('/page/1')}",
            "--correlation-id",
            "order-17",
            "--wait",
            "--json",
        ),
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert submitted.returncode == 0, submitted.stderr
    last_id = json.loads(submitted.stdout)["id"]
    # The record is written just after the result (task_postrun): wait for it.
    (last,) = wait_until(lambda: [r for r in read_records([last_id]) if r.get("name")], timeout=10)
    (first,) = read_records([last["parent_id"]])
    assert first["name"] == "fetch_url"
    assert last["name"] == "analyze_text"
    assert first["correlation_id"] == last["correlation_id"] == "order-17"

    # Each step's log lines name the job, its queue and pool, its process and greenlet/thread,
    # and the correlation id.
    fetch_lines = wait_until(lambda: log_lines_of(io_worker, last["parent_id"]), timeout=10)
    assert any(
        "cid=order-17" in line
        and "job=fetch_url" in line
        and "queue=io" in line
        and "pool=io" in line
        and f"pid={first['pid']}" in line
        and "on=greenlet-" in line
        for line in fetch_lines
    ), fetch_lines
    analyze_lines = wait_until(lambda: log_lines_of(cpu_worker, last_id), timeout=10)
    assert any(
        "cid=order-17" in line
        and "job=analyze_text" in line
        and "queue=cpu" in line
        and f"pid={last['pid']}" in line
        for line in analyze_lines
    ), analyze_lines


def test_without_a_correlation_id_the_pipeline_root_is_used(workers, local_site):
    workers("io", concurrency=5)
    workers("cpu", concurrency=1)
    handle = submit("fetch_and_analyze", url=local_site.url("/page/2"))
    handle.get(timeout=60)
    # The record is written just after the result (task_postrun): wait for it.
    (last,) = wait_until(
        lambda: [r for r in read_records([handle.id]) if r.get("name")], timeout=10
    )
    (first,) = wait_until(
        lambda: [r for r in read_records([last["parent_id"]]) if r.get("name")], timeout=10
    )
    assert first["correlation_id"] == last["correlation_id"] == last["parent_id"]


def test_json_log_lines_parse_and_carry_the_job_context(workers):
    # One worker picks JSON through the setting, the other through the command-line flag.
    io_worker = workers("io", concurrency=5, env={"JOBQ_LOG_FORMAT": "json", **PER_JOB_LINES})
    cpu_worker = workers("cpu", concurrency=1, env=PER_JOB_LINES, extra=("--log-format", "json"))
    with correlation("batch-9"):
        io_handle = submit("io_wait", ms=1)
        cpu_handle = submit("cpu_spin", ms=1)
    ran_in = {"io": io_handle.get(timeout=30)["pid"], "cpu": cpu_handle.get(timeout=30)["pid"]}

    for worker, handle, queue in ((io_worker, io_handle, "io"), (cpu_worker, cpu_handle, "cpu")):
        assert worker.log_path is not None

        def job_lines(w: WorkerProcess = worker, h=handle, q: str = queue) -> list[str]:
            # Wait for a line logged while the job ran (the "received" line comes before).
            lines = log_lines_of(w, h.id)
            return lines if any(f'"queue": "{q}"' in line for line in lines) else []

        lines = wait_until(job_lines, timeout=10)
        entries = [json.loads(line) for line in lines]  # every line of the job is JSON
        for entry in entries:
            assert entry["job_id"] == handle.id
        in_job = [e for e in entries if e["queue"] == queue]
        for entry in in_job:
            assert entry["correlation_id"] == "batch-9"
            assert entry["pool"] == queue
            assert entry["pid"] == ran_in[queue]  # the process that ran the job
            assert entry["greenlet"]
        if queue == "io":
            assert all(e["greenlet"].startswith("greenlet-") for e in in_job)
        # The worker's other log lines are JSON too (the banner is printed, not logged).
        logged = [line for line in worker.log_path.read_text().splitlines() if line.startswith("{")]
        assert len(logged) > len(lines)
        for line in logged:
            json.loads(line)


def test_a_correlation_id_cannot_forge_or_flood_log_lines(workers, redis_client):
    # A client that bypasses `jobq submit` (which checks the id) sends it raw in the header.
    worker = workers("io", concurrency=5, env=PER_JOB_LINES)
    forged = "[2026-01-01 00:00:00,000: ERROR/MainProcess] forged"
    bad = {"forged": f"order-1\n{forged}", "flood": "x" * 100_000}
    ids = {}
    for kind, correlation_id in bad.items():
        headers = task_headers("io_wait")
        headers["jobq_correlation_id"] = correlation_id
        ids[kind] = headers["id"]
        redis_client.lpush("io", envelope(task_body({"ms": 1}), queue="io", headers=headers))
    # Celery and kombu quote a refused content type in their errors.
    headers = task_headers("io_wait")
    ids["content type"] = headers["id"]
    evil_type = f"application/x-evil\n{forged}"
    message = envelope(task_body({"ms": 1}), queue="io", headers=headers, content_type=evil_type)
    redis_client.lpush("io", message)

    def handled() -> bool:  # run (a record) or refused (a dead letter)
        dead = {e["id"] for e in list_dead(limit=10)}
        records = read_records(ids.values())
        return all(i in dead or r.get("state") for i, r in zip(ids.values(), records, strict=True))

    wait_until(handled, timeout=20, message="the messages were neither run nor refused")
    assert worker.log_path is not None
    lines = worker.log_path.read_text().splitlines()
    assert not [line for line in lines if line.startswith(forged)]
    assert max(len(line) for line in lines) < 2000
    # Refused as malformed, never run.
    malformed = list_dead(limit=10, reason="malformed")
    assert {e["id"] for e in malformed} == set(ids.values())
    assert [r.get("state") for r in read_records(ids.values())] == [None, None, None]


def test_context_values_are_kept_to_one_line_of_bounded_length():
    assert one_line("order-17") == "order-17"
    assert one_line("order-17\n[ERROR] forged\x1b[2J") == "order-17\\n[ERROR] forged\\x1b[2J"
    assert len(one_line("x" * 100_000)) == MAX_LENGTH


def test_a_producer_cannot_set_a_correlation_id_workers_would_refuse():
    with pytest.raises(InvalidCorrelationId), correlation("order-17\nforged"):
        pass
    with pytest.raises(InvalidCorrelationId), correlation("x" * 201):
        pass
