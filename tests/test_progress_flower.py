"""Flower shows a running job's progress: state PROGRESS, and ``done/total (percent) note``.

A real ``jobq flower`` (as tests/test_flower.py starts it) and a real I/O worker running
``count_to``; the task page is rendered by Flower's server, read over HTTP with basic auth.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from producers import submit
from tests.test_flower import FlowerRunner, free_port, get, get_json
from tests.waiting import wait_until


@pytest.fixture
def flower(redis_client, tmp_path: Path) -> Iterator[FlowerRunner]:
    runner = FlowerRunner(port=free_port(), log_dir=tmp_path)
    yield runner
    runner.stop()


def test_flower_task_page_shows_progress_while_the_job_runs(flower, workers):
    io_worker = workers("io", concurrency=2)
    base = flower.start(hearing=[io_worker.node_name])
    handle = submit("count_to", n=100, ms=20_000, note="pages fetched")

    def result_row() -> str:
        status, body = get(f"{base}/task/{handle.id}")
        text = html.unescape(body.decode()) if status == 200 else ""
        state = re.search(r"<dt>Status</dt>\s*<dd>\s*<span[^>]*>(\w+)<", text)
        result = re.search(r"<dt>Result</dt>\s*<dd><pre[^>]*><code>([^<]*)<", text)
        return f"{state.group(1)} {result.group(1)}" if state and result else ""

    # The page's Status is PROGRESS and its Result row is the job's latest progress.
    shown = wait_until(
        lambda: (
            re.fullmatch(r"PROGRESS \d+/100 \(\d+%\) pages fetched", row := result_row()) and row
        ),
        timeout=30,
        message=f"flower's task page shows no progress: {result_row()!r}",
    )
    assert "pages fetched" in shown
    assert get_json(f"{base}/api/task/info/{handle.id}")["state"] == "PROGRESS"
