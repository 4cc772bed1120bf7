"""Cluster-wide rate limits: one GCRA schedule per job (and key) in Redis, for every worker.

Celery's own ``rate_limit`` is a token bucket *per worker process*: three replicas of a "10/s"
job run at 30/s, and jobs waiting for a token sit in the worker's prefetch until other jobs
stall (shared notes §3). jobq keeps one schedule in Redis instead, so the limit holds whatever
the number of worker processes, pools or containers.

How a limited job runs (on the worker, before its body):

1. One Lua script (GCRA, clock = ``redis.call('TIME')``, so worker clocks do not matter)
   reserves the job's turn: the next free slot ``1/rate`` after the previous one.
2. If the turn is at most ``JOBQ_IO_RATE_MAX_PARK`` seconds away (``JOBQ_CPU_RATE_MAX_PARK`` on
   the prefork pool) the job waits for it in place. On the I/O pool ``time.sleep`` is gevent's:
   only this greenlet parks, every other job keeps running.
3. Otherwise the job is *parked in Redis*: the same message (same job id, arguments, pipeline
   links, headers, plus its reserved turn) goes into the sorted set ``jobq:delayed:<queue>``
   scored by its turn, and the worker acknowledges the delivery and moves on. A mover thread in
   every worker puts due jobs back on their queue, where they run at once. A long rate-limited
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

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from celery import Task
from celery.exceptions import Ignore
from celery.signals import worker_ready, worker_shutdown

from workers.redis_client import get_redis
from workers.settings import get_settings

LIMITS_KEY = "jobq:limits"  # hash: job name -> rate ("5/s") or "off"
SCHEDULE_PREFIX = "jobq:rate:"  # string per job[:key]: the next free turn (µs, Redis clock)
STATS_KEY = "jobq:ratelimit:stats"  # hash: "<job>:waits", "<job>:wait_seconds", "<job>:parked"
DELAYED_PREFIX = "jobq:delayed:"  # zset per queue: parked messages scored by their turn
SLOT_HEADER = "jobq_rate_slot"  # set on a parked job: its turn is reserved, run it on arrival
OFF = "off"
# How often run-time limits are re-read from Redis in each worker process.
LIMITS_REFRESH_SECONDS = 1.0
# How often each worker's mover looks for parked jobs whose turn has come.
MOVER_INTERVAL = 0.05
MOVER_IDLE_MAX = 1.0
# A mover that takes jobs but dies before publishing them gives them back after this long.
MOVER_LEASE_SECONDS = 30
MOVER_BATCH = 200

log = logging.getLogger(__name__)

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")
_PERIODS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60}
_PERIODS |= {"h": 3600, "hour": 3600}

# GCRA without burst: every job gets the next turn, 1/rate after the previous one.
# KEYS: schedule, stats.  ARGV: interval (µs), job name.  Returns {wait µs, turn µs}.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local turn = tonumber(redis.call('GET', KEYS[1]) or '0')
if turn < now then turn = now end
local following = turn + interval
redis.call('SET', KEYS[1], string.format('%.0f', following), 'PX',
           math.ceil((following - now) / 1000) + 1000)
local wait = turn - now
if wait > 0 then
  redis.call('HINCRBY', KEYS[2], ARGV[2] .. ':waits', 1)
  redis.call('HINCRBYFLOAT', KEYS[2], ARGV[2] .. ':wait_seconds', wait / 1000000)
end
return {string.format('%.0f', wait), string.format('%.0f', turn)}
"""

# KEYS: delayed zset.  ARGV: max count, lease (s).  Takes due members, leasing them.
_TAKE_DUE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), member)
end
return due
"""


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


def by_host(argument: str) -> Callable[[Mapping[str, Any]], str]:
    """A key function: one limit per host (``host:port``) of the URL in ``argument``."""

    def host_of(arguments: Mapping[str, Any]) -> str:
        return urlsplit(str(arguments.get(argument, ""))).netloc.lower()

    host_of.__name__ = f"host of {argument}"
    return host_of


def rate_options(options: dict[str, Any]) -> dict[str, Any]:
    """Turn ``rate=``/``rate_key=`` of ``@io_job``/``@cpu_job`` into task attributes.

    The rate is checked at declaration, so a typo fails at import, not at the first run.
    Celery's own ``rate_limit`` is refused: it holds per worker process only (module docstring).
    """
    options = dict(options)
    if "rate_limit" in options:
        raise TypeError("use rate='N/s' (cluster-wide) instead of Celery's per-worker rate_limit")
    rate = options.pop("rate", None)
    if rate is not None:
        parse_rate(rate)
    options["jobq_rate"] = rate
    key_function = options.pop("rate_key", None)
    # Task options become class attributes: staticmethod keeps the function from being bound.
    options["jobq_rate_key"] = staticmethod(key_function) if key_function else None
    return options


# --- run-time limits ----------------------------------------------------------------------


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
    for field, value in (client or get_redis()).hgetall(STATS_KEY).items():
        job, _, name = field.rpartition(":")
        stats.setdefault(job, {})[name] = float(value)
    return stats


def effective_rate(declared: str | None, override: str | None) -> Rate | None:
    """The limit that applies: the run-time one if set (``"off"`` = none), else the declared."""
    chosen = override if override is not None else declared
    if not chosen or chosen == OFF:
        return None
    return parse_rate(chosen)


class _LimitCache:
    """Run-time limits, re-read from Redis at most once a second per process."""

    def __init__(self) -> None:
        self._values: dict[str, str] = {}
        self._read_at = float("-inf")
        # One reader at a time. On gevent the read yields, and a hundred jobs found the cache
        # stale at once: a hundred HGETALLs and new connections every second, 9% of the
        # worker's CPU (measured). Now the others use the last values meanwhile; only before
        # the very first read do they wait for it, as no limit is known yet.
        self._refreshing = threading.Lock()

    def get(self, job: str) -> str | None:
        if self._stale():
            never_read = self._read_at == float("-inf")
            if self._refreshing.acquire(blocking=never_read):
                try:
                    if self._stale():
                        self._refresh()
                finally:
                    self._refreshing.release()
        return self._values.get(job)

    def _stale(self) -> bool:
        return time.monotonic() - self._read_at > LIMITS_REFRESH_SECONDS

    def _refresh(self) -> None:
        try:
            self._values = read_overrides()
        except Exception:  # keep the last known limits if Redis blips
            log.warning("could not read run-time rate limits", exc_info=True)
        self._read_at = time.monotonic()


_limits = _LimitCache()


# --- on the worker, before a job runs -----------------------------------------------------


def reserve_turn(job: str, rate: Rate, key: str | None = None) -> tuple[float, float]:
    """Reserve the next turn of ``job`` (per ``key``); return (seconds to wait, turn as epoch s)."""
    name = f"{SCHEDULE_PREFIX}{job}" + (f":{key}" if key else "")
    script = get_redis().register_script(_RESERVE)
    wait_us, turn_us = script(keys=[name, STATS_KEY], args=[int(rate.interval * 1e6), job])
    return int(wait_us) / 1e6, int(turn_us) / 1e6


def wait_for_turn(task: Task, arguments: Mapping[str, Any]) -> None:
    """Called by every jobq job before its body: wait for the job's turn under its rate limit.

    Returns when the job may run (at once, or after a short wait in place). When the turn is
    further away, parks the job in Redis and raises :class:`celery.exceptions.Ignore`: the
    worker acknowledges this delivery and the job comes back, same id, when its turn comes.
    """
    request = task.request
    if request.called_directly or _reserved_turn(request) is not None:
        return
    rate = effective_rate(getattr(task, "jobq_rate", None), _limits.get(task.name))
    if rate is None:
        return
    key_function = getattr(task, "jobq_rate_key", None)
    key = key_function(arguments) if key_function else None
    wait, turn = reserve_turn(task.name, rate, key)
    settings = get_settings()
    queue = getattr(task, "queue", None) or "io"
    max_park = settings.cpu_rate_max_park if queue == "cpu" else settings.io_rate_max_park
    if wait <= max_park:
        if wait > 0:
            time.sleep(wait)  # gevent's sleep under the I/O pool: only this greenlet waits
        return
    park(task, turn, queue)
    raise Ignore()


def _reserved_turn(request: Any) -> float | None:
    value = getattr(request, SLOT_HEADER, None)
    if value is None:
        value = (getattr(request, "headers", None) or {}).get(SLOT_HEADER)
    return float(value) if value is not None else None


def park(task: Task, turn: float, queue: str) -> None:
    """Store this delivery's message in ``jobq:delayed:<queue>`` until ``turn`` (epoch s)."""
    from kombu.utils.json import dumps

    signature = task.signature_from_request()
    headers = dict(signature.options.get("headers") or {})
    headers[SLOT_HEADER] = turn
    signature.options["headers"] = headers
    pipe = get_redis().pipeline(transaction=False)
    pipe.zadd(DELAYED_PREFIX + queue, {dumps(dict(signature)): turn})
    pipe.hincrby(STATS_KEY, f"{task.name}:parked", 1)
    pipe.execute()


def move_due_jobs(queues: list[str], *, limit: int = MOVER_BATCH) -> int:
    """Publish parked jobs whose turn has come back to their queue; return how many moved."""
    from celery import signature
    from kombu.utils.json import loads

    from workers.app import app

    client = get_redis()
    take = _take_due_script(client)
    moved = 0
    for queue in queues:
        members = take(keys=[DELAYED_PREFIX + queue], args=[limit, MOVER_LEASE_SECONDS])
        for member in members:
            try:
                signature(loads(member), app=app).apply_async()
            except Exception:
                # Left in the set: its lease expires and a mover tries again.
                log.exception("could not re-publish a rate-limited job")
                continue
            client.zrem(DELAYED_PREFIX + queue, member)
            moved += 1
    return moved


@lru_cache(maxsize=4)
def _take_due_script(client: Any) -> Any:
    return client.register_script(_TAKE_DUE)


def seconds_until_next_due(queues: list[str]) -> float | None:
    """How long until the earliest parked job of ``queues`` is due; None when none is parked.

    Scores are Redis clock times (the Lua scripts read ``TIME``), so compare with Redis's clock.
    """
    pipe = get_redis().pipeline(transaction=False)
    pipe.time()
    for queue in queues:
        pipe.zrange(DELAYED_PREFIX + queue, 0, 0, withscores=True)
    (seconds, micros), *firsts = pipe.execute()
    scores = [first[0][1] for first in firsts if first]
    if not scores:
        return None
    return max(0.0, min(scores) - (seconds + micros / 1_000_000))


class _Mover(threading.Thread):
    """Every worker runs one: parked jobs go back to their queue as soon as their turn comes."""

    def __init__(self, queues: list[str]) -> None:
        super().__init__(name="jobq-rate-mover", daemon=True)
        self.queues = queues
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                if move_due_jobs(self.queues):
                    continue
                # Nothing due: sleep until the next parked job is, at most MOVER_IDLE_MAX, so an
                # idle worker polls once a second instead of 20 times. A job parked meanwhile may
                # run up to that late; the limit itself is never exceeded.
                due_in = seconds_until_next_due(self.queues)
                wait = MOVER_IDLE_MAX if due_in is None else min(MOVER_IDLE_MAX, due_in)
            except Exception:  # Redis restarting: keep trying, the jobs are safe in the set
                log.warning("rate-limit mover: Redis unavailable", exc_info=True)
                wait = MOVER_IDLE_MAX
            self.stopping.wait(max(MOVER_INTERVAL, wait))


_mover: _Mover | None = None


@worker_ready.connect
def _start_mover(**_: Any) -> None:
    global _mover
    from workers.pools import POOLS

    _mover = _Mover([profile.queue for profile in POOLS.values()])
    _mover.start()


@worker_shutdown.connect
def _stop_mover(**_: Any) -> None:
    if _mover is not None:
        _mover.stopping.set()


def describe_limits(jobs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per job for ``jobq limits``: declared, run-time, effective rate, key, waits."""
    overrides = read_overrides()
    stats = read_stats()
    rows = []
    for name, spec in sorted(jobs.items()):
        if spec.task is None:
            continue
        declared = getattr(spec.task, "jobq_rate", None)
        override = overrides.get(name)
        rate = effective_rate(declared, override)
        key_function = getattr(spec.task, "jobq_rate_key", None)
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
