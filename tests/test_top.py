"""`jobq top`: one frame against a known state (real Redis, a real CPU worker, a real backlog)."""

from __future__ import annotations

import time

from click.testing import CliRunner
from rich.console import Console

from ops.cli import main
from ops.sampler import collect_sample
from ops.top import TopCollector, TopState, jobs_per_second, render
from producers import submit_many
from tests.waiting import wait_until
from workers.settings import get_settings
from workers.stores.job_records import read_records


def frame_text(state: TopState) -> str:
    console = Console(record=True, width=160)
    console.print(render(state))
    return console.export_text()


def test_top_shows_backlog_oldest_job_service_times_and_workers(workers, redis_client):
    cpu = workers("cpu", concurrency=1)
    # Two kinds of CPU job: the pool's figures add up every job of the pool.
    done = submit_many("cpu_spin", [{"ms": 5}] * 4) + submit_many(
        "analyze_text", [{"text": "one two three. four five."}] * 2
    )
    wait_until(
        lambda: all(r.get("state") == "SUCCESS" for r in read_records([h.id for h in done])),
        timeout=60,
        message="the CPU jobs did not finish",
    )
    # No I/O worker runs: these 9 jobs are the io backlog.
    backlog = submit_many("io_wait", [{"ms": 1}] * 9)
    key = getattr(get_settings(), "dead_letter_key", "jobq:dead")
    redis_client.hset(key, "dead-1", '{"reason": "failed"}')

    # Look 30 s into the future: the oldest io job is then 30 s old.
    sample = collect_sample(now=time.time() + 30)
    io, cpu_queue = sample["queues"]["io"], sample["queues"]["cpu"]
    assert io["depth"] == len(backlog)
    assert 29 <= io["oldest_age_s"] <= 60
    assert cpu_queue["depth"] == 0
    assert cpu_queue["oldest_age_s"] is None
    assert cpu_queue["finished_total"] == 6
    assert cpu_queue["done_last_window"] == 6
    assert cpu_queue["run_p50_s"] is not None
    assert cpu_queue["run_p95_s"] >= cpu_queue["run_p50_s"]
    assert cpu_queue["wait_p95_s"] >= cpu_queue["wait_p50_s"] >= 0
    assert io["finished_total"] == 0
    assert io["run_p50_s"] is None
    assert sample["dead_letters"] == 1

    collector = TopCollector()
    collector.poll_workers(timeout=1.0)
    state = collector.collect()
    text = frame_text(state)

    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.strip()}
    assert rows["io"][1] == "9"  # backlog
    assert rows["io"][2].endswith("s")  # the oldest job's age, in seconds
    assert rows["cpu"][1] == "0"
    worker_row = rows[cpu.node_name]
    assert worker_row[1] == "prefork"
    assert worker_row[5] == "6"  # processed
    assert "dead letters: 1" in text
    assert "rate-limit waits: 0" in text


def test_jobs_per_second_between_two_frames():
    before = {"t": 100.0, "window_s": 60.0, "queues": {"io": {"finished_total": 10}}}
    after = {
        "t": 102.0,
        "window_s": 60.0,
        "queues": {"io": {"finished_total": 30, "done_last_window": 30}},
    }
    assert jobs_per_second(before, after) == {"io": 10.0}
    # First frame: the last minute's count stands in.
    assert jobs_per_second(None, after) == {"io": 0.5}


def test_top_once_prints_a_frame_of_the_current_backlog(redis_client):
    # No worker runs: the submitted jobs are the backlog the frame must show.
    submit_many("io_wait", [{"ms": 1}] * 3)
    submit_many("cpu_spin", [{"ms": 1}] * 2)

    result = CliRunner().invoke(main, ["top", "--once"], env={"COLUMNS": "160"})

    assert result.exit_code == 0, result.output
    assert "backlog" in result.output
    rows = {line.split()[0]: line.split() for line in result.output.splitlines() if line.strip()}
    assert rows["io"][1] == "3"
    assert rows["cpu"][1] == "2"
    assert "no worker answered" in result.output
