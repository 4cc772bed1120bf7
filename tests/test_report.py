"""`jobq report`: a PNG and a self-contained HTML page from recorded samples."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

from click.testing import CliRunner

from ops.cli import main
from ops.report import charted_run, summarize, throughput
from tests.waiting import wait_until

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def sample(t: float, io_depth: int, io_done: int, cpu_done: int) -> dict:
    def queue(pool: str, depth: int, done: int) -> dict:
        return {
            "pool": pool,
            "depth": depth,
            "oldest_age_s": 2.0 if depth else None,
            "unacked": 0,
            "parked": 0,
            "finished_total": done,
            "failed_total": 0,
            "retries_total": 0,
            "done_last_window": done,
            "wait_p50_s": 0.01 if done else None,
            "wait_p95_s": 0.5 if done else None,
            "run_p50_s": 0.1 if done else None,
            "run_p95_s": 0.2 if done else None,
        }

    return {
        "t": t,
        "window_s": 60.0,
        "queues": {"io": queue("io", io_depth, io_done), "cpu": queue("cpu", 0, cpu_done)},
        "unacked_total": 0,
        "dead_letters": 0,
        "rate_limit_waits": 0,
        "rate_limit": {},
    }


RUN = [sample(100.0, 50, 0, 0), sample(102.0, 30, 20, 4), sample(104.0, 0, 60, 10)]


def test_throughput_and_summary_of_a_run():
    assert throughput(RUN, "io") == [0.0, 10.0, 20.0]
    (io, cpu) = summarize(RUN)
    assert io["queue"] == "io"
    assert io["peak_backlog"] == 50
    assert io["jobs_done"] == 60
    assert io["mean_jobs_per_s"] == 15.0
    assert cpu["jobs_done"] == 10


def test_report_command_writes_a_png_and_a_self_contained_page(tmp_path: Path):
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps(s) + "\n" for s in RUN))
    out = tmp_path / "run" / "report"

    result = CliRunner().invoke(main, ["report", "--samples", str(samples), "--out", str(out)])

    assert result.exit_code == 0, result.output
    png = out.with_suffix(".png").read_bytes()
    assert png.startswith(PNG_MAGIC)
    page = out.with_suffix(".html").read_text()
    embedded = re.search(r'src="data:image/png;base64,([^"]+)"', page)
    assert embedded
    assert base64.b64decode(embedded.group(1)) == png
    assert "<script" not in page
    assert "<td>60</td>" in page  # io jobs done over the run


def test_report_needs_two_samples(tmp_path: Path):
    samples = tmp_path / "one.jsonl"
    samples.write_text(json.dumps(RUN[0]) + "\n")
    result = CliRunner().invoke(main, ["report", "--samples", str(samples)])
    assert result.exit_code == 2
    assert "at least 2 samples" in result.output


def test_sample_then_report_from_redis(redis_client, tmp_path: Path):
    # Real samples of a real (idle) Redis: the file and the capped Redis list both get them.
    samples = tmp_path / "samples.jsonl"
    result = CliRunner().invoke(
        main, ["sample", "--out", str(samples), "--interval", "0.2", "--duration", "0.5"]
    )
    assert result.exit_code == 0, result.output
    lines = samples.read_text().splitlines()
    assert len(lines) >= 2
    assert set(json.loads(lines[0])["queues"]) == {"io", "cpu"}
    assert redis_client.llen("jobq:samples") == len(lines)

    out = tmp_path / "from-redis"
    result = CliRunner().invoke(main, ["report", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.with_suffix(".png").read_bytes().startswith(PNG_MAGIC)


def test_charted_run_draws_the_block_it_wraps(redis_client, tmp_path: Path):
    out = tmp_path / "bench" / "scenario"
    with charted_run(out, title="scenario", interval=0.1) as sampler:
        wait_until(lambda: len(sampler.samples) >= 2, timeout=10)
    assert out.with_suffix(".png").read_bytes().startswith(PNG_MAGIC)
    assert "scenario" in out.with_suffix(".html").read_text()
    assert (tmp_path / "bench" / "scenario-samples.jsonl").read_text().count("\n") >= 3
