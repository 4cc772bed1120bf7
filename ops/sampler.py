"""Samples of the system over a run: backlog next to service time, once a second.

A sample is one JSON object: for each queue the backlog (messages waiting), the age of its
oldest waiting job, messages taken by workers but not acknowledged, jobs finished so far, and
p50/p95 of wait and run time over the last minute; plus retries and dead letters. Everything is
read from Redis in a few round trips; nothing here talks to workers, so sampling costs the
system almost nothing and works with any number of workers.

:class:`Sampler` records samples in a background thread to a JSON Lines file and to a capped
Redis list (``jobq:samples``, last :data:`REDIS_SAMPLES_LIMIT`, expiring), which ``jobq report``
turns into a chart. ``jobq sample`` does the same from the command line.

Example::

    with Sampler(Path("run/samples.jsonl"), interval=1.0):
        run_the_workload()
    $ jobq sample --out samples.jsonl --duration 120
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import redis

from ops.percentiles import percentile
from producers.queues import UNACKED_HASH, queue_depths, queue_lists
from workers.keys import DELAYED_PREFIX, SAMPLES_KEY, SENT_HEADER
from workers.pools import POOLS
from workers.settings import get_settings
from workers.stores import rate_limits
from workers.stores.client import get_redis
from workers.stores.job_stats import pool_of_queue, read_recent, read_totals

REDIS_SAMPLES_LIMIT = 10_000
SAMPLES_TTL = 86_400
WINDOW_S = 60.0


def default_queues() -> list[str]:
    """The queues of the pool profiles (``io``, ``cpu``)."""
    return [profile.queue for profile in POOLS.values()]


def oldest_sent_at(client: redis.Redis, queue: str) -> float | None:
    """When the oldest waiting job of ``queue`` was sent, from its ``jobq_sent_at`` header.

    kombu LPUSHes and workers BRPOP, so the oldest message is the list's tail (index -1). Only
    the JSON envelope's headers are read; the job's body is never decoded, let alone run.
    """
    pipe = client.pipeline(transaction=False)
    for name in queue_lists(queue):
        pipe.lindex(name, -1)
    oldest = None
    for raw in pipe.execute():
        if not raw:
            continue
        try:
            sent = json.loads(raw).get("headers", {}).get(SENT_HEADER)
        except (ValueError, AttributeError):  # not a kombu envelope: not ours to judge here
            continue
        if isinstance(sent, int | float) and (oldest is None or sent < oldest):
            oldest = float(sent)
    return oldest


def unacked_by_queue(client: redis.Redis, queues: Sequence[str]) -> dict[str, int]:
    """Delivered but unacknowledged messages per queue (kombu's ``unacked`` hash).

    The hash holds at most the workers' prefetch windows, so reading it whole is cheap.
    """
    counts = dict.fromkeys(queues, 0)
    for raw in client.hvals(UNACKED_HASH):
        try:
            routing_key = json.loads(raw)[2]
        except (ValueError, IndexError, TypeError):
            continue
        if routing_key in counts:
            counts[routing_key] += 1
    return counts


def dead_letter_count(client: redis.Redis) -> int:
    """Entries in the dead-letter store (0 when there is none yet)."""
    key = get_settings().dead_letter_key
    try:
        return int(client.hlen(key))
    except redis.ResponseError:  # the key holds another type: not the store we know
        return 0


def rate_limit_stats(client: redis.Redis) -> dict[str, dict[str, float]]:
    """Per job: runs that waited for a rate-limit turn, seconds waited, jobs parked in Redis."""
    return rate_limits.read_stats(client)


def parked_by_queue(client: redis.Redis, queues: Sequence[str]) -> dict[str, int]:
    """Rate-limited jobs parked in Redis until their turn (``jobq:delayed:<queue>``)."""
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        pipe.zcard(DELAYED_PREFIX + queue)
    return dict(zip(queues, (int(n) for n in pipe.execute()), strict=True))


def collect_sample(
    client: redis.Redis | None = None,
    queues: Sequence[str] | None = None,
    *,
    now: float | None = None,
    window: float = WINDOW_S,
) -> dict[str, Any]:
    """One sample, as a JSON-ready dict (see the module docstring)."""
    client = client or get_redis()
    queues = list(queues or default_queues())
    now = time.time() if now is None else now
    depths = queue_depths(client, queues)
    unacked = unacked_by_queue(client, queues)
    totals = read_totals(client)
    parked = parked_by_queue(client, queues)
    limits = rate_limit_stats(client)
    per_queue: dict[str, Any] = {}
    for queue in queues:
        pool = pool_of_queue(queue)
        sent = oldest_sent_at(client, queue)
        recent = read_recent(client, queue, since=now - window)
        waits = [job.wait_s for job in recent if job.wait_s is not None]
        runs = [job.run_s for job in recent if job.run_s is not None]
        done: Counter[str] = Counter()
        for (_, job_pool, state), count in totals.items():
            if job_pool == pool:
                done[state] += count  # summed over every job of the pool
        per_queue[queue] = {
            "pool": pool,
            "depth": depths[queue],
            "oldest_age_s": round(max(0.0, now - sent), 3) if sent is not None else None,
            "unacked": unacked[queue],
            # Rate-limited jobs waiting in Redis for their turn: backlog too, just not listed.
            "parked": parked[queue],
            # Jobs that ended for good. RETRY counts attempts that asked to be retried; IGNORED
            # ones were parked by the rate limiter and come back later.
            "finished_total": done.get("SUCCESS", 0) + done.get("FAILURE", 0),
            "failed_total": done.get("FAILURE", 0),
            "retries_total": done.get("RETRY", 0),
            "done_last_window": len(recent),
            "wait_p50_s": percentile(waits, 50),
            "wait_p95_s": percentile(waits, 95),
            "run_p50_s": percentile(runs, 50),
            "run_p95_s": percentile(runs, 95),
        }
    return {
        "t": round(now, 3),
        "window_s": window,
        "queues": per_queue,
        "unacked_total": int(client.hlen(UNACKED_HASH)),
        "dead_letters": dead_letter_count(client),
        "rate_limit_waits": int(sum(job.get("waits", 0) for job in limits.values())),
        "rate_limit": limits,
    }


@dataclass
class Sampler:
    """Record a sample every ``interval`` seconds in a thread, until :meth:`stop`.

    Samples go to ``path`` (JSON Lines, appended) and, unless ``to_redis`` is False, to the
    capped Redis list ``jobq:samples``. Use as a context manager around a run.
    """

    path: Path | None
    interval: float = 1.0
    queues: Sequence[str] | None = None
    to_redis: bool = True
    samples: list[dict[str, Any]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> Sampler:
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="jobq-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        self.sample_once()  # the end of the run is part of the run

    def sample_once(self) -> dict[str, Any]:
        client = get_redis()
        sample = collect_sample(client, self.queues)
        self.samples.append(sample)
        line = json.dumps(sample)
        if self.path:
            with self.path.open("a") as out:
                out.write(line + "\n")
        if self.to_redis:
            pipe = client.pipeline(transaction=False)
            pipe.rpush(SAMPLES_KEY, line)
            pipe.ltrim(SAMPLES_KEY, -REDIS_SAMPLES_LIMIT, -1)
            pipe.expire(SAMPLES_KEY, SAMPLES_TTL)
            pipe.execute()
        return sample

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.sample_once()
            except redis.RedisError as exc:  # a blip in Redis must not end the recording
                click.echo(f"sampler: {exc}", err=True)
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def read_samples(path: Path | None = None) -> list[dict[str, Any]]:
    """Samples from a JSON Lines file, or from Redis' ``jobq:samples`` when ``path`` is None."""
    if path is not None:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [json.loads(line) for line in get_redis().lrange(SAMPLES_KEY, 0, -1)]


def _iter_deadline(duration: float | None) -> Iterator[None]:
    deadline = None if duration is None else time.monotonic() + duration
    while deadline is None or time.monotonic() < deadline:
        yield


@click.command()
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--interval", type=float, default=1.0, show_default=True, help="Seconds.")
@click.option("--duration", type=float, help="Stop after this many seconds (default: Ctrl-C).")
def sample_command(out: Path, interval: float, duration: float | None) -> None:
    """Record samples (backlog, oldest job, wait/run p50/p95 …) to a JSON Lines file."""
    if interval <= 0:
        raise click.BadParameter("must be > 0", param_hint="--interval")
    sampler = Sampler(out, interval=interval).start()
    try:
        for _ in _iter_deadline(duration):
            time.sleep(min(interval, 0.5))
    except KeyboardInterrupt:
        pass
    finally:
        sampler.stop()
    click.echo(f"{len(sampler.samples)} samples in {out}")
