"""Each kind of job runs in the pool made for it, shown from the worker side."""

from __future__ import annotations

import uuid

from producers import submit, submit_many
from producers.status import collect_workers
from workers.stores.probes import read_probe


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
