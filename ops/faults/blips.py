"""Redis blips: Redis restarted (SIGKILL, then started again) while jobs run in both pools.

A restart of Redis (a crash, a failover, a rolling upgrade) drops every worker's connection for
a second or two. What must hold, and what :func:`redis_restarts_while_running` counts:

* jobs running at that moment keep running and complete once: their ack is written after the
  reconnect and their lease keeps being renewed (0 lost, 0 duplicate starts);
* a restart is not the job's fault, so it never counts toward the job's delivery limit, however
  many happen during one job (0 dead-lettered);
* workers reconnect by themselves and go on serving: a batch submitted after the last restart
  completes (the recovery time is measured from the first kill to that batch's last effect).

Example::

    with lab(Path("/tmp/lab"), extra={"appendfsync": "always"}) as running:
        print(redis_restarts_while_running(running, restarts=3))
"""

from __future__ import annotations

import time

from ops.faults.lab import Lab
from ops.faults.scenarios import JOB, FaultResult, _tag

# A delivery limit that three restarts during one job would exceed, were they counted.
DELIVERY_LIMIT = 2


def redis_restarts_while_running(
    lab: Lab, *, restarts: int = 3, job_s: float = 20.0, down_s: float = 1.0
) -> FaultResult:
    """Restart Redis ``restarts`` times while long jobs run in both pools, a peer worker alive.

    Each restart waits until every worker answers again before the next, so each is a
    connection loss of its own for every worker (not one long outage).
    """
    tag = _tag()
    env = {"JOBQ_MAX_RETRIES_ON_WORKER_LOST": str(DELIVERY_LIMIT)}
    # Each worker has free slots, so its consumer is waiting on Redis (BRPOP) when it goes away.
    lab.workers_together(
        {"pool": "io", "concurrency": 8, "env": env, "name": "io"},
        {"pool": "io", "concurrency": 8, "env": env, "name": "io-peer"},
        {"pool": "cpu", "concurrency": 3, "env": env, "name": "cpu"},
    )
    ms = int(job_s * 1000)
    ids = lab.submit_many(JOB["io"], [{"tag": tag, "ms": ms}] * 4)
    ids += lab.submit_many(JOB["cpu"], [{"tag": tag, "ms": ms}] * 2)
    lab.wait_for(lambda: len(lab.starts(tag)) >= len(ids), timeout=30, what="every job running")
    first_kill = time.time()
    for _ in range(restarts):
        lab.redis.kill()
        time.sleep(down_s)  # Redis down for a moment, as in a crash and a supervisor's restart
        lab.redis.restart()
        for worker in lab.workers:
            lab.wait_ready(worker)
    reconnected_s = time.time() - first_kill
    # The same workers serve new jobs in both pools once Redis is back.
    after = lab.submit_many(JOB["io"], [{"tag": tag, "ms": 0}] * 10)
    after += lab.submit_many(JOB["cpu"], [{"tag": tag, "ms": 0}] * 4)
    served = lab.wait_for_effects(tag, after, timeout=60)
    recovered_at = time.time() if served.lost == 0 else None
    tally = lab.wait_for_effects(tag, ids + after, timeout=job_s + 60)
    tally.notes.update(
        restarts=restarts,
        running_at_first_kill=len(ids),
        restarts_took_s=round(reconnected_s, 1),
        jobs_s=job_s,
        workers_alive=sum(worker.alive() for worker in lab.workers),
    )
    return FaultResult(
        f"Redis SIGKILL + restart ×{restarts} while {len(ids)} jobs run (io and cpu, a live peer)",
        tally,
        None if recovered_at is None else recovered_at - first_kill,
        "running jobs complete once: 0 lost, 0 duplicate starts, 0 dead-lettered; "
        "workers reconnect by themselves",
        tally.lost == 0
        and tally.duplicate_starts == 0
        and tally.dead_lettered == 0
        and recovered_at is not None
        and reconnected_s < job_s  # every restart hit the running jobs
        and all(worker.alive() for worker in lab.workers),
    )
