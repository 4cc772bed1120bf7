"""Rate-limit faults: a pool paused while its rate-limited jobs are parked in Redis.

Jobs of both pools are submitted under a cluster-wide rate limit, so most are parked; then both
pools are paused until every turn reserved before the pause has passed, and resumed. Nothing
may be lost or run twice, the parked jobs must stay parked while nobody consumes their queue,
and on resume they must keep to the limit instead of all running at once (the busiest second
is reported against the limit).

Example::

    $ jobq faults --only rate-limit
"""

from __future__ import annotations

import json
import time

from ops.faults.lab import Lab
from ops.faults.scenarios import JOB, FaultResult, _tag
from workers.keys import DELAYED_PREFIX, LIMITS_KEY, PAUSE_PREFIX, TURN_PREFIX
from workers.pools import POOLS

# Jobs per second, and jobs, per pool: three seconds of turns each.
RATES = {"io": 10, "cpu": 5}
SECONDS_OF_TURNS = 3


def busiest_second(times: list[float]) -> int:
    """The most of ``times`` inside any one-second window.

    >>> busiest_second([0.0, 0.5, 0.9, 1.5])
    3
    """
    times = sorted(times)
    return max((sum(1 for t in times[i:] if t - s < 1.0) for i, s in enumerate(times)), default=0)


def _set_paused(lab: Lab, paused: bool) -> None:
    """``jobq pause``/``resume`` of both pools, against the lab's Redis."""
    client = lab.client()
    for pool in POOLS:
        if paused:
            client.set(PAUSE_PREFIX + pool, json.dumps({"since": time.time()}))
        else:
            client.delete(PAUSE_PREFIX + pool)
        command = "jobq_pause" if paused else "jobq_resume"
        lab.producer.control.broadcast(
            command, arguments={"queue": POOLS[pool].queue}, reply=True, timeout=1.0
        )


def paused_with_parked_jobs(lab: Lab) -> FaultResult:
    """Pause both pools while rate-limited jobs are parked; resume after their turns passed."""
    lab.workers_together(
        *({"pool": pool, "concurrency": 20 if pool == "io" else 1} for pool in RATES)
    )
    client = lab.client()
    tag = _tag()
    ids: dict[str, list[str]] = {}
    for pool, rate in RATES.items():
        client.hset(LIMITS_KEY, JOB[pool], f"{rate}/s")
        ids[pool] = lab.submit_many(JOB[pool], [{"tag": tag}] * (rate * SECONDS_OF_TURNS))

    def parked() -> dict[str, int]:
        return {pool: int(client.zcard(DELAYED_PREFIX + POOLS[pool].queue)) for pool in RATES}

    lab.wait_for(lambda: min(parked().values()) > 0, timeout=30, what="jobs parked")
    _set_paused(lab, True)
    paused_at = time.monotonic()
    lab.wait_for(
        lambda: not client.keys(TURN_PREFIX + "*"), timeout=60, what="reserved turns passed"
    )
    held = parked()
    queued = {pool: lab.queued(POOLS[pool].queue) for pool in RATES}
    _set_paused(lab, False)
    resumed_at = time.monotonic()
    every = ids["io"] + ids["cpu"]
    tally = lab.wait_for_effects(tag, every, timeout=120)

    starts: dict[str, dict[str, float]] = {}
    for entry in lab.start_log(tag):
        starts.setdefault(entry["id"], {}).setdefault("t", entry["t"])
    busiest = {
        pool: busiest_second([starts[i]["t"] for i in ids[pool] if i in starts]) for pool in RATES
    }
    last_start = max((s["t"] for s in starts.values()), default=time.time())
    tally.notes.update(
        paused_s=round(resumed_at - paused_at, 1),
        parked_while_paused=sum(held.values()),
        queued_while_paused=sum(queued.values()),
        **{f"busiest_second_{pool}": f"{busiest[pool]} (limit {RATES[pool]}/s)" for pool in RATES},
    )
    # Jobs that come back together may run together by up to a second's worth of turns.
    within = all(busiest[pool] <= 2 * RATES[pool] + 1 for pool in RATES)
    return FaultResult(
        "rate-limited jobs parked while both pools are paused, then resumed",
        tally,
        max(0.0, last_start - (time.time() - (time.monotonic() - resumed_at))),
        "none lost or run twice; parked jobs stay parked while paused; on resume no second "
        "runs more than twice the limit",
        tally.lost == 0 and tally.duplicate_starts == 0 and min(held.values()) > 0 and within,
    )
