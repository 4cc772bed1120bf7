"""What ``shared_workers`` (tests/conftest.py) relies on: a worker outlives a FLUSHALL.

Modules share workers across tests while each test starts on a flushed database. That is only
sound if a running worker keeps consuming its queue (kombu's binding keys are gone after the
flush), still answers control commands (ping, stats) and still stores results and records.
"""

from __future__ import annotations

import subprocess

from ops.processes import jobq_argv
from producers import submit, submit_many
from workers.app import app
from workers.stores.job_records import read_records

from .waiting import wait_until


def test_a_running_worker_keeps_serving_after_flushall(workers, redis_client):
    io_worker = workers("io", concurrency=5)
    cpu_worker = workers("cpu", concurrency=1)
    assert submit("io_wait", ms=1).get(timeout=30)["ms"] == 1
    assert redis_client.keys("_kombu.binding.*")  # there is something for the flush to remove

    for _ in range(2):
        redis_client.flushall()

        handles = [*submit_many("io_wait", [{"ms": 1}] * 10), submit("cpu_spin", ms=1)]
        assert [h.get(timeout=30)["pid"] for h in handles[:10]] == [io_worker.pid] * 10
        assert handles[-1].get(timeout=30)["pid"] != cpu_worker.pid  # a prefork child ran it
        # Records too (a prefork worker stores one just after the result: wait for it).
        ids = [h.id for h in handles]
        wait_until(
            lambda ids=ids: [r.get("state") for r in read_records(ids)] == ["SUCCESS"] * 11,
            timeout=10,
            message="not every job has its record",
        )
        # A producer in a process of its own, which declares nothing in advance, is served too.
        cli = subprocess.run(
            jobq_argv("submit", "cpu_spin", "ms=1", "--wait"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert cli.returncode == 0, cli.stderr

        # Control commands still reach both (with destinations: no waiting out the timeout).
        nodes = sorted([io_worker.node_name, cpu_worker.node_name])
        pongs = app.control.ping(destination=nodes, timeout=10)
        assert sorted(node for reply in pongs for node in reply) == nodes
        stats = app.control.inspect(destination=nodes, timeout=10).stats() or {}
        assert {node: info["pid"] for node, info in stats.items()} == {
            io_worker.node_name: io_worker.pid,
            cpu_worker.node_name: cpu_worker.pid,
        }
