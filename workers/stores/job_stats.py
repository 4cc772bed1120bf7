"""Worker-side job statistics in Redis: cumulative histograms, counters and a recent window.

When a job ends, the record writer (:mod:`workers.features.job_records`) adds it here in the
same Redis pipeline. Three structures, all small and bounded:

- ``jobq:stats:hist:{wait,run}``: one hash per measure; fields ``job|pool|le`` count jobs per
  bucket (not cumulative), ``job|pool|sum`` and ``job|pool|count``. Cumulative since Redis
  started, so every Prometheus scrape (``jobq exporter``) reads a consistent, monotonically
  growing histogram no matter how many workers or exporters there are.
- ``jobq:stats:total``: finished jobs per ``job|pool|state`` (SUCCESS, FAILURE, RETRY …).
- ``jobq:stats:recent:<queue>``: the last :data:`RECENT_LIMIT` jobs of a queue as
  ``finished_at wait run`` strings, for p50/p95 over the last minute (``jobq top``).

The pool in a field comes from the routing key of the message, which any client can set:
routing keys that are not a pool's queue all count as the pool :data:`OTHER_POOL` (and have no
recent window), so a client making up names cannot grow these hashes or add keys. Job names are
bounded already: a message naming no registered job never runs.

Example::

    >>> read_recent(get_redis(), "io", since=time.time() - 60)[0]
    RecentJob(finished_at=1763900000.1, wait_s=0.002, run_s=0.101)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import redis

from workers.keys import HIST_PREFIX, RECENT_PREFIX, TOTAL_KEY
from workers.pools import POOLS
from workers.stores.scripts import LuaScript

# Enough for p95 over a minute at ~30 jobs/s; at higher rates the window is the last N jobs.
RECENT_LIMIT = 2000
RECENT_TTL = 3600
# Seconds. Covers 1 ms synthetic jobs to the CPU pool's 300 s hard limit.
BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    math.inf,
)
FIELD_SEPARATOR = "|"
# Where jobs whose routing key is not a pool's queue are counted.
OTHER_POOL = "other"


def known_pool(queue: str) -> str | None:
    """The pool profile name (``io``/``cpu``) consuming ``queue``, or None."""
    for name, profile in POOLS.items():
        if profile.queue == queue:
            return name
    return None


def pool_of_queue(queue: str) -> str:
    """The pool profile name (``io``/``cpu``) consuming ``queue``; the queue itself if unknown."""
    return known_pool(queue) or queue or "unknown"


def stats_pool(queue: str) -> str:
    """The pool a job counts under in the statistics: its queue's, or :data:`OTHER_POOL`.

    >>> stats_pool("io"), stats_pool("made-up")
    ('io', 'other')
    """
    return known_pool(queue) or OTHER_POOL


def bucket_label(seconds: float) -> str:
    """The ``le`` label of the smallest bucket holding ``seconds``.

    >>> bucket_label(0.03), bucket_label(1e9)
    ('0.05', '+Inf')
    """
    for bound in BUCKETS:
        if seconds <= bound:
            return format_bound(bound)
    return "+Inf"


def format_bound(bound: float) -> str:
    """Prometheus' spelling of a bucket bound."""
    return "+Inf" if math.isinf(bound) else repr(float(bound))


# All of one job's updates in one Lua call: as nine separate commands they cost the worker
# ~0.12 ms of client CPU per job (redis-py packs and parses each), as one EVAL ~0.05 ms
# (measured: 3 000 record writes, min of 4 rounds, on 2 shared cores).
ADD_JOB = LuaScript(__package__, "add_job_stats.lua")


def add_job(pipe: Any, record: dict[str, Any]) -> None:
    """Queue the statistics updates for one finished job on a Redis pipeline (one Lua call).

    ``record`` is a job record as :mod:`workers.features.job_records` writes it (floats or ""
    for times).
    """
    name = record.get("name") or "unknown"
    queue = record.get("queue") or ""
    state = record.get("state") or "UNKNOWN"
    pool = stats_pool(queue)
    prefix = f"{name}{FIELD_SEPARATOR}{pool}{FIELD_SEPARATOR}"
    sent, started, finished = (
        _seconds(record.get(f)) for f in ("sent_at", "started_at", "finished_at")
    )
    wait = max(0.0, started - sent) if sent and started else None
    run = max(0.0, finished - started) if started and finished else None
    measures: list[str] = []
    for value in (wait, run):
        measures += ["", "0"] if value is None else [bucket_label(value), repr(value)]
    # The recent window is per queue: only for jobq's own queues (a key per made-up name would
    # be unbounded).
    known = pool != OTHER_POOL
    recent = f"{finished:.3f} {_num(wait)} {_num(run)}" if known and finished else ""
    # EVAL with the text on the pipeline: a Redis restart (empty script cache) can never make
    # a job's statistics fail.
    ADD_JOB.queue(
        pipe,
        keys=[
            TOTAL_KEY,
            HIST_PREFIX + "wait",
            HIST_PREFIX + "run",
            RECENT_PREFIX + (queue if known else "-"),
        ],
        args=[prefix, state, *measures, recent, RECENT_LIMIT, RECENT_TTL],
    )


def _seconds(value: Any) -> float | None:
    # A time is a number or unknown: a header of another type must not fail the whole write.
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


@dataclass(frozen=True)
class Histogram:
    """One cumulative histogram: ``buckets`` maps each ``le`` label to a cumulative count."""

    job: str
    pool: str
    buckets: dict[str, int]
    count: int
    sum: float


def read_histograms(client: redis.Redis, measure: str) -> list[Histogram]:
    """Every (job, pool) histogram of ``measure`` (``wait`` or ``run``), buckets cumulated."""
    raw: dict[str, str] = client.hgetall(HIST_PREFIX + measure)
    grouped: dict[tuple[str, str], dict[str, str]] = {}
    for field, value in raw.items():
        job, pool, part = field.rsplit(FIELD_SEPARATOR, 2)
        grouped.setdefault((job, pool), {})[part] = value
    histograms = []
    for (job, pool), parts in sorted(grouped.items()):
        running = 0
        cumulative: dict[str, int] = {}
        for bound in BUCKETS:
            label = format_bound(bound)
            running += int(parts.get(label, 0))
            cumulative[label] = running
        histograms.append(
            Histogram(
                job=job,
                pool=pool,
                buckets=cumulative,
                count=int(parts.get("count", 0)),
                sum=float(parts.get("sum", 0.0)),
            )
        )
    return histograms


def read_totals(client: redis.Redis) -> dict[tuple[str, str, str], int]:
    """Finished jobs by (job, pool, state), cumulative."""
    totals = {}
    for field, value in client.hgetall(TOTAL_KEY).items():
        job, pool, state = field.rsplit(FIELD_SEPARATOR, 2)
        totals[(job, pool, state)] = int(value)
    return totals


@dataclass(frozen=True)
class RecentJob:
    """One finished job in the recent window (times in seconds; None when unknown)."""

    finished_at: float
    wait_s: float | None
    run_s: float | None


def read_recent(client: redis.Redis, queue: str, *, since: float) -> list[RecentJob]:
    """Jobs of ``queue`` that finished at or after ``since`` (at most the last window's worth).

    Every entry is checked: workers push concurrently, so the list is only roughly by time.
    """
    jobs = []
    for entry in client.lrange(RECENT_PREFIX + queue, 0, RECENT_LIMIT - 1):
        finished, wait, run = entry.split(" ")
        if float(finished) < since:
            continue
        jobs.append(
            RecentJob(
                finished_at=float(finished),
                wait_s=None if wait == "-" else float(wait),
                run_s=None if run == "-" else float(run),
            )
        )
    return jobs
