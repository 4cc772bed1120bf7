"""Flower, set up as `jobq flower` runs it: auth, both pools' workers, task counts, metrics, state.

A real Flower process, real workers and a real HTTP client (urllib), all on 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ops.processes import ManagedProcess, jobq_argv, spawn
from producers import submit_many
from tests.waiting import wait_until
from workers.stores.job_records import read_records

CREDENTIALS = "jobq:test-only-password"
IMPLEMENTATIONS = {
    "celery.concurrency.gevent:TaskPool": "gevent",
    "celery.concurrency.prefork:TaskPool": "prefork",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str, *, auth: str | None = CREDENTIALS) -> tuple[int, bytes]:
    request = urllib.request.Request(url)  # noqa: S310 - http://127.0.0.1 only
    if auth:
        token = base64.b64encode(auth.encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def get_json(url: str) -> Any:
    status, body = get(url)
    assert status == 200, body[:500]
    return json.loads(body)


@dataclass
class FlowerRunner:
    """Starts `jobq flower` with basic auth and a state file; can stop and start it again."""

    port: int
    log_dir: Path
    running: list[ManagedProcess] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, hearing: Sequence[str] = (), cwd: Path | None = None) -> str:
        """Start Flower (in ``cwd``); with ``hearing``, wait until it hears those workers.

        Events are Redis pub/sub: whatever is published before Flower's receiver has
        subscribed never reaches it, and /healthcheck answers before that.
        """
        argv = jobq_argv("flower", "--port", str(self.port), "--db", str(self.log_dir / "state"))
        env = {**os.environ, "FLOWER_BASIC_AUTH": CREDENTIALS}
        name = f"flower-{len(self.running)}"
        process = spawn(name, argv, env=env, log_dir=self.log_dir, cwd=cwd)
        self.running.append(process)
        wait_until(
            lambda: process.alive() and _up(f"{self.base}/healthcheck"),
            timeout=60,
            message=f"flower did not start:\n{process.log_tail()}",
        )
        for node in hearing:
            wait_until(
                lambda node=node: _online(self.base, node),
                timeout=30,
                message=f"flower heard no heartbeat from {node}:\n{process.log_tail()}",
            )
        return self.base

    def stop(self) -> None:
        for process in self.running:
            if process.alive():
                process.stop(timeout=20)


@pytest.fixture
def flower(redis_client, tmp_path: Path) -> Iterator[FlowerRunner]:
    runner = FlowerRunner(port=free_port(), log_dir=tmp_path)
    yield runner
    runner.stop()


def _online(base: str, node: str) -> bool:
    status, body = get(base + "/metrics", auth=None)
    if status != 200:
        return False
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == "flower_worker_online" and sample.labels.get("worker") == node:
                return sample.value == 1
    return False


def _up(url: str) -> bool:
    try:
        return get(url, auth=None)[0] == 200
    except OSError:
        return False


def test_flower_with_auth_shows_both_pools_task_counts_queues_and_metrics(flower, workers):
    io_worker = workers("io", concurrency=5)
    cpu_worker = workers("cpu", concurrency=1)
    base = flower.start(hearing=[io_worker.node_name, cpu_worker.node_name])

    # Without credentials: 401 for the UI and the API. /metrics and /healthcheck are open by
    # Flower's design (it exempts them from auth), so Prometheus can scrape them.
    for path in ("/", "/api/workers", "/api/tasks"):
        assert get(base + path, auth=None)[0] == 401, path
    assert get(base + "/api/workers", auth="jobq:wrong")[0] == 401

    handles = submit_many("io_wait", [{"ms": 5}] * 4) + submit_many("cpu_spin", [{"ms": 5}] * 3)
    ids = [h.id for h in handles]
    wait_until(
        lambda: all(r.get("state") == "SUCCESS" for r in read_records(ids)),
        timeout=60,
        message="the jobs did not finish",
    )

    # Both workers, each with its pool type.
    listed = get_json(base + "/api/workers?refresh=1")
    pools = {
        name: IMPLEMENTATIONS.get(info["stats"]["pool"]["implementation"])
        for name, info in listed.items()
        if "stats" in info
    }
    assert pools == {io_worker.node_name: "gevent", cpu_worker.node_name: "prefork"}

    # Task counts by name and state match what was submitted.
    def counts() -> Counter[tuple[str, str]]:
        tasks = get_json(base + "/api/tasks")
        return Counter((t["name"], t["state"]) for t in tasks.values())

    expected = Counter({("io_wait", "SUCCESS"): 4, ("cpu_spin", "SUCCESS"): 3})
    wait_until(lambda: counts() == expected, timeout=20, message=f"flower saw {counts()}")
    tasks = get_json(base + "/api/tasks")
    assert set(tasks) == set(ids)

    # Queue lengths of io and cpu, from the broker (Redis).
    lengths = get_json(base + "/api/queues/length")
    by_name = {q["name"]: q["messages"] for q in lengths["active_queues"]}
    assert by_name == {"io": 0, "cpu": 0}

    # Prometheus metrics, no credentials needed.
    status, body = get(base + "/metrics", auth=None)
    assert status == 200
    succeeded = Counter()
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == "flower_events_total" and sample.labels["type"] == "task-succeeded":
                succeeded[sample.labels["task"]] += int(sample.value)
    assert succeeded == Counter({"io_wait": 4, "cpu_spin": 3})


def test_flower_keeps_its_history_across_a_restart(flower, workers):
    io_worker = workers("io", concurrency=5)
    base = flower.start(hearing=[io_worker.node_name])
    handles = submit_many("io_wait", [{"ms": 1}] * 5)
    ids = {h.id for h in handles}

    def states() -> dict[str, str]:
        return {tid: t["state"] for tid, t in get_json(base + "/api/tasks").items()}

    try:
        wait_until(lambda: states() == dict.fromkeys(ids, "SUCCESS"), timeout=30)
    except BaseException:
        raise AssertionError(f"flower saw {states()}") from None

    # TERM makes Flower save its state file; a new Flower on the same file shows the history.
    flower.stop()
    base_again = flower.start()
    tasks = get_json(base_again + "/api/tasks")
    assert set(tasks) == ids
    assert {t["state"] for t in tasks.values()} == {"SUCCESS"}


def test_a_flowerconfig_py_in_the_working_directory_cannot_turn_auth_off(flower, tmp_path):
    # Flower runs ./flowerconfig.py (Python) and lets it override FLOWER_BASIC_AUTH; jobq's
    # Flower reads jobq's own configuration file instead.
    here = tmp_path / "cwd"
    here.mkdir()
    ran = tmp_path / "flowerconfig-ran"
    (here / "flowerconfig.py").write_text(f"open({str(ran)!r}, 'w').close()\nbasic_auth = []\n")
    base = flower.start(cwd=here)

    assert not ran.exists(), "Flower ran the flowerconfig.py of its working directory"
    assert get(base + "/api/workers", auth=None)[0] == 401
    assert get(base + "/api/workers")[0] == 200


@pytest.mark.integration
def test_flower_refuses_to_listen_on_a_unix_socket_it_cannot_guard(tmp_path):
    socket_path = tmp_path / "flower.sock"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLOWER_")}
    for spelling in ("--unix-socket", "--unix_socket"):
        argv = jobq_argv("flower", "--no-auth", "--", f"{spelling}={socket_path}")
        try:
            done = subprocess.run(argv, env=clean, capture_output=True, text=True, timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"Flower started on {spelling} (socket there: {socket_path.exists()})")
        assert done.returncode == 2, done.stderr
        assert "with jobq flower's own options" in done.stderr
        assert not socket_path.exists()
