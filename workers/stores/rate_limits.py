"""Cluster-wide rate limits, their Redis side: schedules, run-time limits, parked jobs, statistics.

The worker's side (waiting for a turn, parking, the mover) is :mod:`workers.features.rate_limits`;
declaring a rate is :mod:`workers.registry.rates`. One GCRA schedule per job (and key) in Redis
serves every worker.

Celery's own ``rate_limit`` is a token bucket *per worker process*: three replicas of a "10/s"
job run at 30/s, and jobs waiting for a token sit in the worker's prefetch, holding slots other
jobs could use. jobq keeps one schedule in Redis instead, so the limit holds whatever
the number of worker processes, pools or containers.

How a limited job runs (on the worker, before its body):

1. One Lua script (GCRA, clock = ``redis.call('TIME')``, so worker clocks do not matter)
   reserves the job's turn: the next free slot ``1/rate`` after the previous one.
2. If the turn is at most ``JOBQ_IO_RATE_MAX_PARK`` seconds away (``JOBQ_CPU_RATE_MAX_PARK`` on
   the prefork pool) the job waits for it in place. On the I/O pool ``time.sleep`` is gevent's:
   only this greenlet parks, every other job keeps running.
3. Otherwise the job is *parked in Redis*: the same message (same job id, arguments, pipeline
   links, headers) goes into the sorted set ``jobq:delayed:<queue>`` scored by its turn, the
   turn itself into ``jobq:turn:<job id>``, and the worker acknowledges the delivery and moves
   on. The mover thread of every worker consuming that queue puts due jobs back on it, where
   each takes its reserved turn (once) and runs at once. A turn is claimed from Redis, never
   from the message, so no message can skip the limit; a job that comes back more than
   ``TURN_GRACE_SECONDS`` after its turn takes a new one, and while a queue has no consumer
   (its pool paused or without workers) its parked jobs stay parked, so a backlog never comes
   back all at once. A long rate-limited
   backlog therefore holds no worker slot and no prefetch (unlike Celery's ``rate_limit``, which
   was measured holding 38 of 40 slots), does not spend retries, and is not in worker memory
   (unlike ``retry(countdown=…)``, bounded only by ``worker_eta_task_limit``). Parked jobs count
   in the producers' admission gate, so back pressure still sees them.

Rates are ``"20/s"``, ``"600/m"``, ``"3600/h"`` (fractions allowed: ``"0.5/s"``). A job declares
its rate with ``@io_job(rate="20/s")`` and optionally a key function of its arguments, e.g.
``rate_key=by_host("url")`` so each site gets its own "5/s". Limits set at run time live in the
Redis hash ``jobq:limits`` and override the declared ones within a second, without a restart::

    $ jobq limits set fetch_url 5/s
    $ jobq limits clear fetch_url

Example::

    @io_job(rate="20/s", rate_key=by_host("url"))
    def call_api(url: str) -> dict: ...
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from workers.keys import (
    DELAYED_PREFIX,
    LIMITS_KEY,
    RATE_STATS_KEY,
    SCHEDULE_PREFIX,
    SCHEDULED_PREFIX,
    TURN_PREFIX,
)
from workers.stores.client import get_redis
from workers.stores.scripts import LuaScript

OFF = "off"
# A mover that takes jobs but dies before publishing them gives them back after this long.
MOVER_LEASE_SECONDS = 30
MOVER_BATCH = 200
# A parked job that comes back this long after its reserved turn takes a new one. Jobs coming
# back late together run together, so this bounds how far starts can bunch up (a second's
# worth of turns at most); it is long enough that a mover or a queue a little behind (a busy
# host) does not make jobs give up their turns.
TURN_GRACE_SECONDS = 1.0

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")
_PERIODS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60}
_PERIODS |= {"h": 3600, "hour": 3600}

RESERVE = LuaScript(__package__, "reserve_turn.lua")
TAKE_DUE = LuaScript(__package__, "take_due.lua")


class InvalidRate(ValueError):
    """A rate that is not ``N/s``, ``N/m`` or ``N/h`` with N > 0."""


@dataclass(frozen=True)
class Rate:
    """``count`` jobs per ``period`` seconds."""

    count: float
    period: float
    text: str

    @property
    def interval(self) -> float:
        """Seconds between two turns."""
        return self.period / self.count

    def per_second(self) -> float:
        return self.count / self.period


def parse_rate(text: str) -> Rate:
    """Parse ``"20/s"``, ``"600/m"``, ``"3600/h"``.

    >>> parse_rate("600/m").interval
    0.1
    """
    match = _RATE.match(text or "")
    if not match or float(match.group(1)) <= 0:
        raise InvalidRate(f"{text!r} is not a rate: use N/s, N/m or N/h with N > 0 (e.g. 20/s)")
    count, unit = float(match.group(1)), match.group(2)
    return Rate(count=count, period=_PERIODS[unit], text=f"{match.group(1)}/{unit[0]}")


def set_limit(job: str, rate: str) -> str:
    """Set ``job``'s limit at run time (``"off"`` disables a declared one); returns it."""
    value = OFF if rate.strip().lower() in (OFF, "none", "0") else parse_rate(rate).text
    get_redis().hset(LIMITS_KEY, job, value)
    return value


def clear_limit(job: str) -> bool:
    """Remove ``job``'s run-time limit (its declared one applies again)."""
    return bool(get_redis().hdel(LIMITS_KEY, job))


def read_overrides() -> dict[str, str]:
    """Run-time limits, by job name."""
    return dict(get_redis().hgetall(LIMITS_KEY))


def read_stats(client: Any = None) -> dict[str, dict[str, float]]:
    """Per job: how many runs waited for their turn, for how long in all, how many were parked."""
    stats: dict[str, dict[str, float]] = {}
    for field, value in (client or get_redis()).hgetall(RATE_STATS_KEY).items():
        job, _, name = field.rpartition(":")
        stats.setdefault(job, {})[name] = float(value)
    return stats


def effective_rate(declared: str | None, override: str | None) -> Rate | None:
    """The limit that applies: the run-time one if set (``"off"`` = none), else the declared."""
    chosen = override if override is not None else declared
    if not chosen or chosen == OFF:
        return None
    return parse_rate(chosen)


def reserve_turn(
    job: str, rate: Rate, key: str | None = None, job_id: str | None = None
) -> tuple[float, float]:
    """Reserve the next turn of ``job`` (per ``key``); return (seconds to wait, turn as epoch s).

    A job parked with :func:`keep_turn` under ``job_id`` gets that turn instead (once, and only
    if it is less than ``TURN_GRACE_SECONDS`` old).
    """
    name = f"{SCHEDULE_PREFIX}{job}" + (f":{key}" if key else "")
    wait_us, turn_us = RESERVE(
        get_redis(),
        keys=[name, RATE_STATS_KEY, TURN_PREFIX + (job_id or "")],
        args=[int(rate.interval * 1e6), job, int(TURN_GRACE_SECONDS * 1e6)],
    )
    return int(wait_us) / 1e6, int(turn_us) / 1e6


def keep_turn(pipe: Any, job_id: str, turn: float, wait: float) -> None:
    """Queue on ``pipe`` the reservation of ``turn`` (epoch s) for the parked job ``job_id``.

    It lives until the turn is past the grace: a job that comes back later takes a new turn.
    """
    pipe.set(
        TURN_PREFIX + job_id,
        f"{turn * 1e6:.0f}",
        px=int((max(wait, 0.0) + TURN_GRACE_SECONDS) * 1000) + 1000,
    )


def take_due(queue: str, *, limit: int = MOVER_BATCH) -> list[str]:
    """Parked messages of ``queue`` whose turn has come, leased to the caller for a while."""
    return list(
        TAKE_DUE(get_redis(), keys=[DELAYED_PREFIX + queue], args=[limit, MOVER_LEASE_SECONDS])
    )


def forget_parked(queue: str, member: str) -> None:
    """Remove a parked message once it is back on its queue."""
    get_redis().zrem(DELAYED_PREFIX + queue, member)


def seconds_until_next_due(
    queues: list[str], delayed_queues: list[str] | None = None
) -> float | None:
    """How long until the earliest parked job of ``queues``, or delayed job of
    ``delayed_queues`` (default ``queues``), is due; None if none.

    Scores are Redis clock times (the Lua scripts read ``TIME``), so compare with Redis's clock.
    Delayed submits (``jobq:scheduled:<queue>``) are moved by the same loop, so they count too.
    """
    pipe = get_redis().pipeline(transaction=False)
    pipe.time()
    for queue in queues:
        pipe.zrange(DELAYED_PREFIX + queue, 0, 0, withscores=True)
    for queue in delayed_queues if delayed_queues is not None else queues:
        pipe.zrange(SCHEDULED_PREFIX + queue, 0, 0, withscores=True)
    (seconds, micros), *firsts = pipe.execute()
    scores = [first[0][1] for first in firsts if first]
    if not scores:
        return None
    return max(0.0, min(scores) - (seconds + micros / 1_000_000))


def describe_limits(jobs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per job for ``jobq limits``: declared, run-time, effective rate, key, waits."""
    overrides = read_overrides()
    stats = read_stats()
    rows = []
    for name, spec in sorted(jobs.items()):
        if spec.kind == "pipeline":
            continue
        declared = spec.rate
        override = overrides.get(name)
        rate = effective_rate(declared, override)
        key_function = spec.rate_key
        rows.append(
            {
                "job": name,
                "declared": declared,
                "override": override,
                "effective": rate.text if rate else None,
                "key": getattr(key_function, "__name__", None) if key_function else None,
                **{k: stats.get(name, {}).get(k, 0) for k in ("waits", "wait_seconds", "parked")},
            }
        )
    return rows
