"""Fault scenarios for the lease: shutdown, clock skew and a blocked gevent hub.

A lease (workers/features/leases.py) keeps a delivered job from being handed to a second
worker while a live one runs it. Each scenario here runs jobs longer than the lease in both
pools, with an idle live peer per pool that would take any job whose lease lapsed, injects one
fault, and counts duplicate starts:

* :func:`rolling_restart`: SIGTERM to the busy workers (a rolling deploy); their running jobs
  outlive the lease while the pool drains.
* :func:`clock_skew`: one worker per pool runs with its clock 25 s ahead (libfaketime).
* :func:`blocked_hub`: a gevent job computes without yielding for longer than the lease.

They run under a scaled lease (runner.SCALED_LEASE, 5 s) so they take seconds, not minutes;
what they count does not depend on the scale.

Example::

    with lab(Path("/tmp/lab"), env=SCALED_LEASE) as running:
        print(rolling_restart(running, lease_s=5).row())
"""

from __future__ import annotations

import glob
import signal
import time
from collections.abc import Iterable

from ops.faults.lab import Lab, Tally
from ops.faults.scenarios import JOB, FaultResult, _tag, lease_result
from ops.processes import WorkerProcess

POOLS = ("io", "cpu")
CONCURRENCY = {"io": 3, "cpu": 1}
NO_RENEWAL = {"JOBQ_LEASE_RENEW_INTERVAL": "100000"}  # the negative control's switch
LIBFAKETIME = "/usr/lib/*/faketime/libfaketimeMT.so.1"  # Debian's faketime package


def _start(lab: Lab, specs: Iterable[tuple[str, str, dict[str, str]]]) -> list[WorkerProcess]:
    """Start workers (pool, name, env) side by side, then wait until each answers."""
    started = [
        lab.worker(pool, concurrency=CONCURRENCY[pool], env=env, name=name, ready=False)
        for pool, name, env in specs
    ]
    for worker in started:
        lab.wait_ready(worker)
    return started


def _submit_long(lab: Lab, tag: str, ms: int, per_pool: dict[str, int]) -> dict[str, list[str]]:
    """Jobs of ``ms`` ms per pool; their ids by pool."""
    return {
        pool: lab.submit_many(JOB[pool], [{"tag": tag, "ms": ms}] * count)
        for pool, count in per_pool.items()
    }


def _duplicates_by_pool(lab: Lab, tag: str, ids: dict[str, list[str]]) -> dict[str, int]:
    starts = lab.starts(tag)
    return {
        f"duplicate_starts_{pool}": sum(max(0, starts.get(i, 0) - 1) for i in pool_ids)
        for pool, pool_ids in ids.items()
    }


def _wait_started(lab: Lab, tag: str, count: int) -> None:
    lab.wait_for(lambda: len(lab.starts(tag)) >= count, timeout=60, what=f"{count} jobs running")


def _settle(lab: Lab, tag: str, ids: list[str], *, timeout: float, quiet: bool = True) -> Tally:
    """Wait for every effect and, if ``quiet``, for nothing left held or queued; then tally.

    Waiting for quiet counts the duplicates still to come; without renewal (the negative
    control) they keep coming for a while, and one is proof enough.
    """
    deadline = time.monotonic() + timeout
    lab.wait_for_effects(tag, ids, timeout=timeout)
    if not quiet:
        return lab.tally(tag, ids)
    while time.monotonic() < deadline and (
        lab.unacked() or any(lab.queued(pool) for pool in POOLS)
    ):
        time.sleep(0.1)
    return lab.tally(tag, ids)


def rolling_restart(lab: Lab, *, lease_s: float, renew: bool = True) -> FaultResult:
    """SIGTERM busy io and cpu workers whose jobs outlive the lease; live peers stand by."""
    tag = _tag()
    env = {} if renew else NO_RENEWAL
    stopping = _start(lab, [(pool, f"stopping-{pool}", env) for pool in POOLS])
    ms = int(lease_s * 4000)
    by_pool = _submit_long(lab, tag, ms, CONCURRENCY)
    ids = [i for pool_ids in by_pool.values() for i in pool_ids]
    _wait_started(lab, tag, len(ids))
    for worker in stopping:
        worker.signal(signal.SIGTERM)  # a warm shutdown, as docker stop and compose send
    termed_at = time.monotonic()
    # The peers come up while the stopping workers drain, so they can only get a job whose
    # lease lapsed: each job they start is a second start.
    _start(lab, [(pool, f"peer-{pool}", env) for pool in POOLS])
    for worker in stopping:
        worker.process.wait(timeout=ms / 1000 + 60)
    exit_s = time.monotonic() - termed_at
    tally = _settle(lab, tag, ids, timeout=ms / 1000 + 60, quiet=renew)
    tally.notes.update(exit_s=round(exit_s, 1), **_duplicates_by_pool(lab, tag, by_pool))
    label = "" if renew else ", renewal OFF (negative control)"
    name = f"SIGTERM to busy io+cpu workers, jobs outliving the {lease_s:g} s lease{label}"
    return lease_result(name, tally, renew)


def faketime_env(offset_s: int) -> dict[str, str]:
    """Environment that runs a process with its wall clock ``offset_s`` seconds off."""
    found = sorted(glob.glob(LIBFAKETIME))
    if not found:
        raise RuntimeError("libfaketime not found: install the faketime package (apt)")
    return {
        "LD_PRELOAD": found[0],
        # The monotonic clock moves by the offset too, which changes no interval; leaving it
        # alone (FAKETIME_DONT_FAKE_MONOTONIC) makes libfaketime fail Python's time.sleep.
        "FAKETIME": f"{offset_s:+d}s",
    }


def clock_skew(lab: Lab, *, lease_s: float, skew_s: int = 25) -> FaultResult:
    """One io and one cpu worker run with their clock ``skew_s`` ahead; jobs run on all four."""
    tag = _tag()
    ahead = faketime_env(skew_s)
    workers = _start(
        lab,
        [(pool, f"ahead-{pool}", ahead) for pool in POOLS]
        + [(pool, f"on-time-{pool}", {}) for pool in POOLS],
    )
    by_pool = _submit_long(
        lab, tag, int(lease_s * 3000), {pool: 2 * CONCURRENCY[pool] for pool in POOLS}
    )
    ids = [i for pool_ids in by_pool.values() for i in pool_ids]
    tally = _settle(lab, tag, ids, timeout=lease_s * 3 * 4 + 60)
    tally.notes.update(
        skew_s=skew_s,
        workers_alive=sum(w.alive() for w in workers),
        **_duplicates_by_pool(lab, tag, by_pool),
    )
    return FaultResult(
        f"one io and one cpu worker with the clock {skew_s} s ahead, {lease_s:g} s lease",
        tally,
        None,
        "0 lost, 0 duplicate starts",
        tally.lost == 0 and tally.duplicate_starts == 0,
    )


def blocked_hub(lab: Lab, *, lease_s: float) -> FaultResult:
    """A gevent job blocks its hub for 3× the lease; the process's other jobs are kept."""
    tag = _tag()
    _start(lab, [(pool, f"busy-{pool}", {}) for pool in POOLS])
    long_ms = int(lease_s * 5000)
    by_pool = _submit_long(lab, tag, long_ms, {"io": CONCURRENCY["io"] - 1, "cpu": 1})
    cooperative = by_pool["io"] + by_pool["cpu"]
    _wait_started(lab, tag, len(cooperative))
    blocking = lab.submit_many("record_effect_blocking", [{"tag": tag, "ms": int(lease_s * 3000)}])
    _wait_started(lab, tag, len(cooperative) + 1)
    _start(lab, [(pool, f"peer-{pool}", {}) for pool in POOLS])
    ids = cooperative + blocking
    tally = _settle(lab, tag, ids, timeout=long_ms / 1000 + 60)
    again = _duplicates_by_pool(lab, tag, {"io": by_pool["io"], "blocker": blocking})
    tally.notes.update(
        others_started_again=again["duplicate_starts_io"],
        blocker_started_again=again["duplicate_starts_blocker"],
    )
    return FaultResult(
        f"gevent job blocking its hub for {3 * lease_s:g} s ({lease_s:g} s lease)",
        tally,
        None,
        "0 lost, 0 duplicate starts (neither the blocker nor its neighbours)",
        tally.lost == 0 and tally.duplicate_starts == 0,
    )
