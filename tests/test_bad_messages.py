"""Bad input pushed straight into the queues is refused, dead-lettered, and never run.

Each message is LPUSHed into the ``io`` list by hand, the way a foreign or malicious client
could: a pickle payload (which would create a sentinel file if it were ever unpickled), a body
that is not JSON, a truncated body, a message without task headers, an unknown job name,
arguments that fail the job's schema, and an envelope that is not even JSON. After all of them
the same worker must still run a good job.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from ops.faults.messages import (
    celery_builtin_messages,
    envelope,
    pickle_envelope,
    task_body,
    task_envelope,
    task_headers,
)
from tests.waiting import wait_until
from workers.stores.dead_letters import get_dead, list_dead


def _dead_ids() -> set[str]:
    return {entry["id"] for entry in list_dead(limit=1000)}


def test_bad_messages_are_dead_lettered_and_never_run(
    workers: Any, redis_client: Any, tmp_path: Path
) -> None:
    worker = workers("io", concurrency=4)
    sentinel = tmp_path / "pickle-was-loaded"
    schema_sentinel = tmp_path / "schema-violation-ran"
    ids = {name: str(uuid.uuid4()) for name in ("pickle", "json", "truncated", "unknown", "schema")}
    good_body = task_body({"path": str(tmp_path / "x")})
    messages = [
        pickle_envelope("write_file", creates=str(sentinel), queue="io", job_id=ids["pickle"]),
        envelope(b"{not json at all", queue="io", headers=task_headers("write_file", ids["json"])),
        envelope(
            good_body[: len(good_body) // 2],
            queue="io",
            headers=task_headers("write_file", ids["truncated"]),
        ),
        envelope(good_body, queue="io", headers={}),  # no task header at all
        task_envelope("no_such_job", {}, queue="io", job_id=ids["unknown"]),
        # `paht` is not an argument of write_file: the schema refuses it before the body runs.
        task_envelope(
            "write_file", {"paht": str(schema_sentinel)}, queue="io", job_id=ids["schema"]
        ),
    ]
    for message in messages:
        redis_client.lpush("io", message)

    wait_until(
        lambda: set(ids.values()) <= _dead_ids() and len(list_dead(limit=1000)) >= len(messages),
        timeout=30,
        message=f"not all bad messages were dead-lettered: {_dead_ids()}",
    )
    reasons = {key: get_dead(job_id)["reason"] for key, job_id in ids.items()}
    assert reasons == {
        "pickle": "content_disallowed",
        "json": "decode_error",
        "truncated": "decode_error",
        "unknown": "unknown_job",
        "schema": "invalid_arguments",
    }
    assert {entry["reason"] for entry in list_dead(limit=1000)} >= {"malformed"}
    assert get_dead(ids["schema"])["kwargs"] == {"paht": str(schema_sentinel)}
    assert not sentinel.exists(), "the pickle payload was deserialized"
    assert not schema_sentinel.exists()

    # The worker survived all of it and still runs good jobs.
    assert worker.alive()
    good = tmp_path / "good-job-ran"
    redis_client.lpush("io", task_envelope("write_file", {"path": str(good)}, queue="io"))
    wait_until(good.exists, timeout=30, message="a good job did not run after the bad ones")
    assert redis_client.llen("io") == 0
    # Nothing left held: every message was acked (the last one just after its effect).
    wait_until(lambda: redis_client.hlen("unacked") == 0, timeout=10)


def test_envelope_that_is_not_json_does_not_stop_the_worker(
    workers: Any, redis_client: Any, tmp_path: Path
) -> None:
    worker = workers("cpu", concurrency=1)
    for garbage in ("this is not a kombu envelope", "42", '{"body": "x"}', "[1, 2]"):
        redis_client.lpush("cpu", garbage)
    redis_client.lpush("cpu", task_envelope("record_effect_cpu", {"tag": "t"}, queue="cpu"))
    wait_until(lambda: redis_client.hlen("jobq:effects:t") == 1, timeout=30)
    assert worker.alive()
    wait_until(lambda: len(list_dead(limit=100, reason="malformed")) == 4, timeout=10)
    malformed = list_dead(limit=100, reason="malformed")
    assert {e["queue"] for e in malformed} == {"cpu"}
    # Nothing left held: every message was acked (the last one just after its effect).
    wait_until(lambda: redis_client.hlen("unacked") == 0, timeout=10)


def test_celery_builtin_tasks_are_refused_like_unknown_jobs(
    workers: Any, redis_client: Any, tmp_path: Path
) -> None:
    # Celery registers its canvas helpers in every worker: celery.map would call a job inline
    # (past its rate limit), celery.chord_unlock sends its callback and re-sends itself. None of
    # them is a jobq job, so a message naming one is refused like any unknown name.
    worker = workers("io", concurrency=4)
    messages = celery_builtin_messages(str(tmp_path), queue="io")
    for message in messages.values():
        redis_client.lpush("io", message)

    ids = {f"builtin-{name}" for name in messages}
    wait_until(
        lambda: ids <= _dead_ids(),
        timeout=30,
        message=f"not all celery.* messages were dead-lettered: {ids - _dead_ids()}",
    )
    reasons = {name: get_dead(f"builtin-{name}")["reason"] for name in messages}
    assert reasons == dict.fromkeys(messages, "unknown_job")
    # Nothing ran: no job created its file, nothing was sent on.
    good = tmp_path / "good-job-ran"
    redis_client.lpush("io", task_envelope("write_file", {"path": str(good)}, queue="io"))
    wait_until(good.exists, timeout=30, message="a good job did not run after the bad ones")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "logs") == [good.name]
    assert redis_client.llen("io") == 0
    assert worker.alive()


def test_a_crafted_message_reads_no_redis_key_and_passes_no_unchecked_argument(
    workers: Any, redis_client: Any
) -> None:
    # analyze_text reads a page fetch_url kept under jobq:body:…; pointed at any other key (a
    # password, another job's result) it would hand that key's text back in its result.
    secret = "confidential payroll numbers"
    redis_client.set("app:secret", secret)
    crafted = {
        "text-key": ({"text_key": "app:secret"}, []),
        "positional-page": ({}, [{"body_key": "app:secret"}]),
        "positional-extra": ({"text": "fine"}, [None, "unchecked", 3]),
    }
    for name, (kwargs, args) in crafted.items():
        redis_client.lpush(
            "cpu", task_envelope("analyze_text", kwargs, args=args, queue="cpu", job_id=name)
        )
    workers("cpu", concurrency=1)

    wait_until(
        lambda: set(crafted) <= _dead_ids(),
        timeout=30,
        message=f"crafted arguments were not refused: {set(crafted) - _dead_ids()}",
    )
    assert {name: get_dead(name)["reason"] for name in crafted} == dict.fromkeys(
        crafted, "invalid_arguments"
    )
    stored = [redis_client.get(key) or "" for key in redis_client.keys("celery-task-meta-*")]
    assert not [text for text in stored if "payroll" in text]
