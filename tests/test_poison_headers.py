"""A message with a bad header field is refused once; the jobs around it run once each.

Any Celery client can send a valid job with headers of the wrong type: ``jobq_sent_at="x"``,
``root_id={}``, a dict as the task id or routing key, a correlation id with a line break in it.
Each used to break something for everyone: one bad record write dropped the whole group-commit
batch (every result, record and ack of up to ~100 jobs, which then all ran again after their
lease, the bad one forever), a dict task id stopped the gevent worker, a dict routing key made
every lease sweep fail. Here such messages are mixed into a batch of good jobs, on a worker
with a short lease so that anything run again would show within the test.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from ops.faults.lab import Lab
from ops.faults.messages import envelope, task_body, task_headers, with_field
from ops.faults.poison_headers import poison_header_in_batch
from tests.waiting import wait_until
from workers.jobs.faulty import EFFECTS_PREFIX, STARTS_PREFIX
from workers.keys import RECENT_PREFIX
from workers.stores import job_stats as jobstats
from workers.stores.dead_letters import list_dead

SHORT_LEASE = {
    "JOBQ_VISIBILITY_TIMEOUT": "4",
    "JOBQ_LEASE_RENEW_INTERVAL": "1",
    "JOBQ_RESTORE_INTERVAL": "1",
}
# Header or delivery-info fields a foreign client got wrong: (field, value).
POISONS: list[tuple[str, Any]] = [
    ("jobq_sent_at", "x"),
    ("root_id", {"a": 1}),
    ("parent_id", ["x"]),
    ("jobq_correlation_id", {"a": 1}),
    ("jobq_correlation_id", "ok\n[2026-01-01 00:00:00,000: ERROR/MainProcess] forged line"),
    ("retries", "x"),
    ("id", {"a": 1}),
    ("routing_key", {"a": 1}),
]


def job_message(tag: str, *, field: str | None = None, value: Any = None) -> tuple[str, str]:
    """A ``record_effect`` message for ``io`` (with one bad field, if given) and its job id."""
    headers = task_headers("record_effect")
    headers["jobq_sent_at"] = time.time()
    message = envelope(task_body({"tag": tag, "ms": 50}), queue="io", headers=headers)
    return (message if field is None else with_field(message, field, value)), headers["id"]


def protocol1_message(tag: str, job_id: Any) -> tuple[str, str]:
    """A protocol-1 ``record_effect`` message with ``job_id`` as its id."""
    body = {"task": "record_effect", "id": job_id, "args": [], "kwargs": {"tag": tag}}
    return envelope(json.dumps(body).encode(), queue="io", headers={}), str(job_id)


def test_bad_headers_mixed_into_a_batch_are_refused_once_and_nothing_runs_twice(
    workers: Any, redis_client: Any
) -> None:
    worker = workers("io", concurrency=25, env=SHORT_LEASE)
    tag = uuid.uuid4().hex[:8]
    good = [job_message(tag) for _ in range(50)]
    bad = [job_message(tag, field=field, value=value) for field, value in POISONS]
    # Celery's protocol 1 (fields in the body), as a Celery 3 client sends it.
    bad += [protocol1_message(tag, job_id) for job_id in ({"a": 1}, "ok\nforged")]
    # The bad ones in the middle of the good ones: they are fetched and finish in one batch.
    messages = [m for m, _ in good[:25]] + [m for m, _ in bad] + [m for m, _ in good[25:]]
    redis_client.lpush("io", *messages)

    good_ids = [job_id for _, job_id in good]
    wait_until(
        lambda: len(redis_client.hgetall(EFFECTS_PREFIX + tag)) >= len(good_ids),
        timeout=60,
        message="not every good job ran",
    )
    # Every message is acknowledged or refused: nothing held, nothing comes back.
    wait_until(
        lambda: redis_client.hlen("unacked") == 0 and redis_client.llen("io") == 0,
        timeout=20,
        message=f"messages still held: {redis_client.hlen('unacked')} unacked\n"
        + worker.log_tail(),
    )
    wait_until(
        lambda: len(list_dead(limit=100, reason="malformed")) >= len(bad),
        timeout=10,
        message=f"not every bad message was dead-lettered: {list_dead(limit=100)}",
    )
    starts = {k: int(v) for k, v in redis_client.hgetall(STARTS_PREFIX + tag).items()}
    effects = {k: int(v) for k, v in redis_client.hgetall(EFFECTS_PREFIX + tag).items()}
    assert [job_id for job_id in good_ids if effects.get(job_id) != 1] == []
    assert [job_id for job_id in good_ids if starts.get(job_id) != 1] == []
    # None of the bad messages ran: refused before the body, each dead-lettered once.
    assert set(starts) == set(good_ids)
    malformed = list_dead(limit=100, reason="malformed")
    assert len(malformed) == len(bad)
    assert all("\n" not in entry["error"] for entry in malformed)
    assert worker.alive()
    # The forged line is nowhere in the worker's log as a line of its own.
    assert "\n[2026-01-01 00:00:00,000: ERROR/MainProcess] forged" not in worker.log_tail(10**6)


def test_routing_keys_of_any_name_neither_grow_the_statistics_nor_lose_jobs(
    workers: Any, redis_client: Any
) -> None:
    # A job is filed under its routing key: in the statistics (one hash field and one list per
    # name, without bound) and when its lease expires (it goes back to the list of that name,
    # which no worker reads). In a job queue, only the queue's own name is accepted.
    workers("io", concurrency=10)
    tag = uuid.uuid4().hex[:8]
    made_up = [job_message(tag, field="routing_key", value=f"made-up-{n}") for n in range(30)]
    good = [job_message(tag) for _ in range(5)]
    redis_client.lpush("io", *[message for message, _ in made_up + good])
    wait_until(
        lambda: (
            len(redis_client.hgetall(EFFECTS_PREFIX + tag)) == len(good)
            and len(list_dead(limit=100, reason="malformed")) == len(made_up)
        ),
        timeout=30,
        message=f"stats: {redis_client.hgetall(jobstats.TOTAL_KEY)}, dead: {list_dead(limit=3)}",
    )
    assert set(redis_client.hgetall(EFFECTS_PREFIX + tag)) == {job_id for _, job_id in good}
    wait_until(lambda: redis_client.hlen("unacked") == 0, timeout=10)
    # Statistics only under jobq's own queues.
    assert set(redis_client.hkeys(jobstats.TOTAL_KEY)) == {"record_effect|io|SUCCESS"}
    assert redis_client.keys(RECENT_PREFIX + "*") == [RECENT_PREFIX + "io"]
    assert "routing key" in list_dead(limit=1, reason="malformed")[0]["error"]


def test_statistics_fold_queues_jobq_does_not_know_into_one_pool() -> None:
    assert [jobstats.stats_pool(q) for q in ("io", "cpu", "made-up", "")] == [
        "io",
        "cpu",
        jobstats.OTHER_POOL,
        jobstats.OTHER_POOL,
    ]


def test_fault_scenario_poison_header_in_a_batch(fault_lab: Lab) -> None:
    result = poison_header_in_batch(fault_lab)
    row = result.row()
    assert (row["lost"], row["duplicate_starts"], row["dead_lettered"]) == (0, 0, 1), row
    assert (row["notes"]["poison_runs"], row["notes"]["poison_reason"]) == (0, "malformed")
    assert result.ok, row
