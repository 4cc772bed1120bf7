"""Each kind of job runs in the pool made for it, shown from the worker side."""

from __future__ import annotations

import uuid

import pytest

from producers import submit, submit_many
from producers.status import collect_workers
from workers.stores.dead_letters import list_dead
from workers.stores.job_records import read_records
from workers.stores.probes import read_probe

from .waiting import wait_until


def test_io_job_runs_in_a_gevent_greenlet_of_the_worker_process(workers):
    worker = workers("io", concurrency=20)
    probe = f"io-{uuid.uuid4().hex}"

    result = submit("io_wait", ms=10, probe_name=probe).get(timeout=30)

    (info,) = [w for w in collect_workers(timeout=2) if w["name"] == worker.node_name]
    assert info["pool"] == "gevent"
    assert result["pid"] == worker.pid == info["pid"]  # no child process: the worker itself
    assert read_probe(probe)["visits"][0]["greenlet"] is True


def test_cpu_job_runs_in_a_prefork_child_process(workers):
    worker = workers("cpu", concurrency=2)

    result = submit("cpu_spin", ms=5).get(timeout=30)

    (info,) = [w for w in collect_workers(timeout=2) if w["name"] == worker.node_name]
    assert info["pool"] == "prefork"
    assert result["pid"] != worker.pid
    assert result["pid"] in info["processes"]


def test_one_io_worker_keeps_at_least_50_jobs_in_flight_at_once(workers):
    probe = f"flight-{uuid.uuid4().hex}"
    # Queue first, then start the worker: this measures the worker, not how fast we submit.
    handles = submit_many("io_wait", [{"ms": 200, "probe_name": probe}] * 200)
    workers("io")  # default concurrency (100)

    for handle in handles:
        handle.get(timeout=60)

    seen = read_probe(probe)
    assert len(seen["visits"]) == 200
    assert seen["peak"] >= 50, f"only {seen['peak']} io_wait jobs overlapped"
    assert len({visit["pid"] for visit in seen["visits"]}) == 1  # all in one process


def test_two_cpu_jobs_run_at_the_same_time_in_two_processes(workers):
    workers("cpu", concurrency=2)
    probe = f"cpu-{uuid.uuid4().hex}"

    handles = submit_many("cpu_spin", [{"ms": 1500, "probe_name": probe}] * 2)
    pids = {handle.get(timeout=60)["pid"] for handle in handles}

    seen = read_probe(probe)
    first, second = sorted(seen["visits"], key=lambda visit: visit["start"])
    assert len(pids) == 2
    assert second["start"] < first["end"], "the two cpu_spin jobs did not overlap"
    assert seen["peak"] == 2


def test_prefork_children_started_with_spawn_record_and_dead_letter_their_jobs(workers):
    # A spawned child is a fresh interpreter that unpickles the app: it must get jobq's
    # features too (job records, dead letters), not Celery's bare app.
    workers("cpu", concurrency=1, extra=("--pool-start-method", "spawn"))
    done = submit("cpu_spin", ms=1)
    failed = submit("always_fail", message="spawned")

    assert done.get(timeout=60)["ms"] == 1
    with pytest.raises(ValueError, match="spawned"):
        failed.get(timeout=60)
    (record,) = wait_until(
        lambda: (records := read_records([done.id]))[0].get("worker") and records, timeout=15
    )
    assert record["state"] == "SUCCESS"
    assert wait_until(lambda: failed.id in {e["id"] for e in list_dead()}, timeout=15)
