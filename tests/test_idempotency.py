"""At-least-once, made safe at the producer: idempotency keys and the argument size limit.

No worker runs here: the queue lists themselves show what was (and was not) enqueued.
"""

from __future__ import annotations

import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from ops.processes import jobq_argv
from ops.reply_drop_proxy import ReplyDropProxy
from producers import submit, submit_many
from producers.idempotency import idempotency_key
from producers.payload import PayloadTooLarge
from tests.waiting import wait_until
from workers.registry.schema import InvalidArguments


def jobq(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        jobq_argv(*args),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_same_key_returns_the_existing_job_and_enqueues_once(redis_client: Any) -> None:
    first = submit("io_wait", ms=1, key="order-17")
    again = submit("io_wait", ms=1, key="order-17")
    other = submit("io_wait", ms=1, key="order-18")
    assert again.id == first.id
    assert other.id != first.id
    assert redis_client.llen("io") == 2


def test_concurrent_submits_with_one_key_enqueue_one_job(redis_client: Any) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        handles = list(pool.map(lambda _: submit("io_wait", ms=1, key="race"), range(16)))
    assert len({h.id for h in handles}) == 1
    assert redis_client.llen("io") == 1


def test_cli_key_prints_the_same_id_and_the_window_expires(redis_client: Any) -> None:
    # Far longer than two CLI starts on a loaded machine: the window runs from the first enqueue.
    env = {"JOBQ_IDEMPOTENCY_WINDOW": "60"}
    first = jobq("submit", "io_wait", "ms=1", "--key", "nightly", env=env)
    again = jobq("submit", "io_wait", "ms=1", "--key", "nightly", env=env)
    assert first.returncode == 0, first.stderr
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout
    assert "already submitted" in again.stderr
    assert redis_client.llen("io") == 1
    # The key lives for the window, then is free again: a new job. The window's end is brought
    # forward (PEXPIRE) rather than waited for.
    key = idempotency_key("io_wait", "nightly")
    assert 0 < redis_client.ttl(key) <= 60
    redis_client.pexpire(key, 1)
    wait_until(lambda: not redis_client.exists(key), timeout=10)
    later = jobq("submit", "io_wait", "ms=1", "--key", "nightly", env=env)
    assert later.stdout.strip() != first.stdout.strip()
    assert redis_client.llen("io") == 2


def test_oversized_arguments_are_refused_before_anything_is_sent(
    redis_client: Any, tmp_path: Path
) -> None:
    big = "x" * (2 * 1024 * 1024)
    with pytest.raises(PayloadTooLarge, match="JOBQ_MAX_ARGUMENT_BYTES"):
        submit("analyze_text", text=big)
    with pytest.raises(InvalidArguments, match="item 1: arguments are"):
        submit_many("analyze_text", [{"text": "fine"}, {"text": big}])
    assert redis_client.llen("cpu") == 0

    small_limit = {"JOBQ_MAX_ARGUMENT_BYTES": "2048"}
    refused = jobq("submit", "analyze_text", "text=" + "y" * 5000, env=small_limit)
    assert refused.returncode == 2
    assert "JOBQ_MAX_ARGUMENT_BYTES" in refused.stderr
    lines = tmp_path / "jobs.jsonl"
    lines.write_text(json.dumps({"text": "ok"}) + "\n" + json.dumps({"text": "z" * 5000}) + "\n")
    bulk = jobq("submit", "analyze_text", "--file", str(lines), env=small_limit)
    assert bulk.returncode == 2  # bad input: the line is refused and named
    assert "line 2:" in bulk.stderr
    assert "JOBQ_MAX_ARGUMENT_BYTES" in bulk.stderr
    assert "Traceback" not in bulk.stderr
    assert redis_client.llen("cpu") == 1  # the good line (bulk policy: good lines are sent)


@pytest.mark.parametrize("job", ["io_wait", "fetch_and_analyze"])
def test_a_submit_whose_reply_is_lost_repeated_with_its_key_enqueues_once(
    redis_server: Any, redis_client: Any, job: str
) -> None:
    # Redis applies the enqueue, the reply never reaches the producer: the submit may retry
    # on its own or fail, and the user repeats it with the same key, as the README says to.
    arguments = ["ms=1"] if job == "io_wait" else ["url=http://127.0.0.1:9/"]
    with ReplyDropProxy(redis_server.port, marker=b"kwargsrepr") as proxy:
        through = redis_server.url.replace(str(redis_server.port), str(proxy.port))
        first = jobq("submit", job, *arguments, "--key", "lost-reply", env={"REDIS_URL": through})
        assert proxy.dropped == 1, first.stderr
    again = jobq("submit", job, *arguments, "--key", "lost-reply")
    assert again.returncode == 0, again.stderr
    queue = "io"  # a pipeline's first step is fetch_url
    assert redis_client.llen(queue) == 1  # not lost, not duplicated
    if first.returncode == 0:
        assert first.stdout == again.stdout  # both know the job by one id
