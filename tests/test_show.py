"""`jobq show JOB_ID`: a job's state, timings, worker, result or error, and pipeline neighbours.

The tests only submit jobs and read what became of them, so they share their workers
(``shared_workers``); each still starts on an empty database.
"""

from __future__ import annotations

import json

from click.testing import CliRunner

from ops.cli import main
from producers import submit
from tests.waiting import wait_until
from workers.stores.job_records import read_records


def show(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["show", *args])
    return result.exit_code, result.output


def wait_for_record(job_id: str) -> None:
    # The worker writes the job record just after storing the result (task_postrun).
    wait_until(lambda: read_records([job_id])[0].get("name"), timeout=10)


def test_show_follows_a_pipeline_across_both_pools(shared_workers, local_site):
    io_worker = shared_workers("io", concurrency=5)
    cpu_worker = shared_workers("cpu", concurrency=1)
    handle = submit("fetch_and_analyze", url=local_site.url("/page/3"), top=3)
    analysis = handle.get(timeout=60)
    wait_for_record(handle.id)

    code, output = show(handle.id, "--json")
    assert code == 0, output
    last = json.loads(output)
    assert last["name"] == "analyze_text"
    assert last["state"] == "SUCCESS"
    assert last["worker"] == cpu_worker.node_name
    assert last["result"]["words"] == analysis["words"]
    assert last["error"] is None
    assert last["dead_letter"] is None
    assert last["wait_s"] >= 0
    assert last["run_s"] >= 0
    assert last["children"] == []
    parent = last["parent"]
    assert parent["name"] == "fetch_url"
    assert parent["state"] == "SUCCESS"
    # The correlation id of a pipeline submitted without one is its first job's id.
    assert last["correlation_id"] == parent["id"]

    code, output = show(parent["id"], "--json")
    assert code == 0, output
    first = json.loads(output)
    assert first["worker"] == io_worker.node_name
    assert first["parent"] is None
    assert [child["id"] for child in first["children"]] == [handle.id]

    code, text = show(handle.id)
    assert code == 0
    assert "analyze_text" in text
    assert f"fetch_url {parent['id']} SUCCESS" in text
    assert cpu_worker.node_name in text


def test_show_prints_the_error_of_a_failed_job(shared_workers, local_site):
    shared_workers("io", concurrency=5)
    handle = submit("fetch_url", url=local_site.url("/bytes/5000"), max_bytes=1024)
    handle.get(timeout=30, propagate=False)
    wait_for_record(handle.id)

    code, output = show(handle.id, "--json")
    assert code == 0, output
    job = json.loads(output)
    assert job["state"] == "FAILURE"
    assert "max_bytes" in job["error"]
    assert job["result"] is None
    assert "Traceback" in (job["traceback"] or "")
    # A job that failed for good is in the dead-letter store, and show says so.
    assert job["dead_letter"]["reason"] == "failed"

    code, text = show(handle.id)
    assert "FAILURE" in text
    assert "max_bytes" in text


def test_show_tells_how_fire_and_forget_jobs_ended(shared_workers, local_site, redis_client):
    shared_workers("io", concurrency=5)
    succeeded = submit("io_wait", ms=1, ignore_result=True)
    failed = submit(
        "fetch_url", url=local_site.url("/bytes/5000"), max_bytes=1024, ignore_result=True
    )
    wait_for_record(succeeded.id)
    wait_for_record(failed.id)

    code, output = show(succeeded.id, "--json")
    assert code == 0, output
    assert json.loads(output)["state"] == "SUCCESS"  # from its record: it has no result
    assert redis_client.exists(f"celery-task-meta-{succeeded.id}") == 0
    # A failure is kept even so (store_errors_even_if_ignored), so show can say why.
    code, output = show(failed.id, "--json")
    job = json.loads(output)
    assert job["state"] == "FAILURE"
    assert "max_bytes" in job["error"]


def test_show_an_unknown_id_exits_1(redis_client):
    code, output = show("00000000-0000-0000-0000-000000000000")
    assert code == 1
    assert "no record of job" in output
