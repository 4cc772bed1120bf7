"""Fault scenarios: inject one fault into a :class:`~ops.faults.lab.Lab`, count what survived.

Each scenario submits N synthetic jobs that record their effect by job id, injects its fault,
waits for quiescence with a deadline, and returns a :class:`FaultResult`: the tally (submitted,
lost, duplicate effects and starts, dead-lettered), the time from the fault to the moment the
last affected job was running again, and the promise the design makes for that fault. The tests
assert on these results; ``jobq faults`` prints them as the table in docs/reliability.md.

Example::

    with lab(Path("/tmp/lab")) as running:
        print(worker_sigkill(running, "io"))
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ops.faults.lab import Lab, Tally
from ops.processes import jobq_argv
from ops.redis_server import free_port

JOB = {"io": "record_effect", "cpu": "record_effect_cpu"}


@dataclass
class FaultResult:
    """One row of the reliability table."""

    fault: str
    tally: Tally
    recovery_s: float | None
    promise: str
    ok: bool

    def row(self) -> dict[str, Any]:
        return {
            "fault": self.fault,
            "submitted": self.tally.submitted,
            "lost": self.tally.lost,
            "duplicate_effects": self.tally.duplicate_effects,
            "duplicate_starts": self.tally.duplicate_starts,
            "dead_lettered": self.tally.dead_lettered,
            "recovery_s": None if self.recovery_s is None else round(self.recovery_s, 1),
            "promise": self.promise,
            "ok": self.ok,
            "notes": dict(self.tally.notes),
        }


def _tag() -> str:
    return uuid.uuid4().hex[:10]


def held_ids(lab: Lab) -> set[str]:
    """Ids of the jobs delivered and not yet acknowledged (running, prefetched, waiting)."""
    ids = set()
    for raw in lab.client().hvals("unacked"):
        payload = json.loads(raw)[0]
        ids.add(str((payload.get("headers") or {}).get("id")))
    return ids


def restarted_at(lab: Lab, tag: str, ids: set[str], after: float) -> float | None:
    """When the last of ``ids`` started again after ``after`` (epoch seconds), if all did."""
    firsts: dict[str, float] = {}
    for entry in lab.start_log(tag):
        if entry["id"] in ids and entry["t"] > after:
            firsts.setdefault(entry["id"], entry["t"])
    return max(firsts.values()) if ids and set(firsts) >= ids else None


def child_sigkill(lab: Lab, n: int = 8, ms: int = 1500) -> FaultResult:
    """SIGKILL one prefork child mid-job: its job is re-sent at once and completes."""
    tag = _tag()
    lab.worker("cpu", concurrency=2)
    ids = lab.submit_many(JOB["cpu"], [{"tag": tag, "ms": ms}] * n)
    lab.wait_for(lambda: len(lab.start_log(tag)) >= 2, timeout=30, what="two jobs running")
    victim = lab.start_log(tag)[0]
    os.kill(victim["pid"], signal.SIGKILL)
    killed_at = time.time()
    tally = lab.wait_for_effects(tag, ids, timeout=90)
    back = restarted_at(lab, tag, {victim["id"]}, killed_at)
    return FaultResult(
        "prefork child SIGKILL mid-job",
        tally,
        None if back is None else back - killed_at,
        "0 lost, 0 duplicate effects, ≤1 duplicate start per kill",
        tally.lost == 0 and tally.duplicate_effects == 0 and tally.duplicate_starts <= 1,
    )


def worker_sigkill(lab: Lab, pool: str, n: int | None = None, ms: int = 3000) -> FaultResult:
    """SIGKILL a whole worker (every process) with jobs running and prefetched."""
    tag = _tag()
    concurrency = 10 if pool == "io" else 2
    n = n or concurrency * 3
    # Multiplier 2, so the victim also holds prefetched jobs that never started: with jobq's
    # default of 1 a worker holds only what it runs (gevent: one more, as the pool blocks).
    victim = lab.worker(
        pool, concurrency=concurrency, name=f"victim-{pool}", env={"JOBQ_PREFETCH_MULTIPLIER": "2"}
    )
    ids = lab.submit_many(JOB[pool], [{"tag": tag, "ms": ms}] * n)
    # Wait until the victim runs `concurrency` jobs and holds more, prefetched.
    holding = concurrency + (1 if pool == "io" else concurrency)
    lab.wait_for(
        lambda: len(lab.starts(tag)) >= concurrency and lab.unacked() >= holding,
        timeout=30,
        what="the victim worker busy",
    )
    held = held_ids(lab)
    running = len(lab.starts(tag))
    victim.kill()  # SIGKILL the process group: main process and children, like an OOM kill
    killed_at = time.time()
    lab.worker(pool, concurrency=concurrency, name=f"survivor-{pool}")
    tally = lab.wait_for_effects(tag, ids, timeout=120)
    back = restarted_at(lab, tag, held, killed_at)
    tally.notes.update(held_at_kill=len(held), running_at_kill=running)
    return FaultResult(
        f"whole {pool} worker SIGKILL ({running} running, {len(held) - running} prefetched)",
        tally,
        None if back is None else back - killed_at,
        "0 lost; duplicate starts ≤ jobs running; all back < 60 s",
        tally.lost == 0
        and tally.duplicate_starts <= running
        and back is not None
        and back - killed_at < 60,
    )


def long_jobs_on_live_workers(
    lab: Lab, pool: str, *, lease_s: float, n: int = 2, renew: bool = True
) -> FaultResult:
    """Jobs running 4× the lease on a live worker, a second worker idle: no redelivery."""
    tag = _tag()
    env = {} if renew else {"JOBQ_LEASE_RENEW_INTERVAL": "100000"}  # negative control
    concurrency = n if pool == "io" else 1
    lab.worker(pool, concurrency=concurrency, env=env, name="busy")
    lab.worker(pool, concurrency=concurrency, env=env, name="idle")
    ids = lab.submit_many(JOB[pool], [{"tag": tag, "ms": int(lease_s * 4000)}] * n)
    tally = lab.wait_for_effects(tag, ids, timeout=lease_s * 4 * n + 60)
    label = "renewal on" if renew else "renewal OFF (negative control)"
    return lease_result(f"{pool} jobs running 4× the {lease_s:g} s lease, {label}", tally, renew)


def lease_result(name: str, tally: Tally, renew: bool) -> FaultResult:
    """The verdict of a lease scenario: with renewal, nothing lost and nothing started twice.

    With renewal off (the negative control) duplicates are expected, which shows the scenario
    can see them; only a loss fails it then.
    """
    promise = "0 lost, 0 duplicate starts"
    if not renew:
        promise = "duplicates expected (shows the check works)"
    held = tally.lost == 0 and (tally.duplicate_starts == 0 or not renew)
    return FaultResult(name, tally, None, promise, held)


def sigterm(lab: Lab, pool: str, n: int = 8, ms: int = 2000) -> FaultResult:
    """SIGTERM (docker stop): running jobs finish, prefetched ones return to the queue at once."""
    tag = _tag()
    concurrency = 3 if pool == "io" else 2
    # Multiplier 2 so that the worker also holds jobs it has not started (see worker_sigkill).
    worker = lab.worker(
        pool,
        concurrency=concurrency,
        name=f"stopping-{pool}",
        env={"JOBQ_PREFETCH_MULTIPLIER": "2"},
    )
    ids = lab.submit_many(JOB[pool], [{"tag": tag, "ms": ms}] * n)
    holding = concurrency + (1 if pool == "io" else concurrency)
    lab.wait_for(
        lambda: len(lab.starts(tag)) >= concurrency and lab.unacked() >= holding,
        timeout=30,
        what="the worker busy",
    )
    running = len(lab.starts(tag))
    worker.signal(signal.SIGTERM)
    stopped_at = time.time()
    worker.process.wait(timeout=ms / 1000 + 30)
    exited_after = time.time() - stopped_at
    finished = len(lab.effects(tag))
    queued_after, unacked_after = lab.queued(pool), lab.unacked()
    lab.worker(pool, concurrency=concurrency, name=f"after-{pool}")
    tally = lab.wait_for_effects(tag, ids, timeout=60)
    tally.notes.update(
        running_at_term=running,
        finished_before_exit=finished,
        back_in_queue_at_exit=queued_after,
        unacked_at_exit=unacked_after,
        exit_s=round(exited_after, 1),
    )
    return FaultResult(
        f"SIGTERM to a busy {pool} worker",
        tally,
        exited_after,
        "running jobs finish, the rest back in the queue at exit; 0 lost, 0 duplicates",
        tally.lost == 0
        and tally.duplicate_starts == 0
        and finished >= running
        and unacked_after == 0
        and queued_after == n - finished,
    )


def poison_prefork(lab: Lab, max_retries: int = 2) -> FaultResult:
    """A job that kills its prefork child: run at most N+1 times, then dead-lettered."""
    tag = _tag()
    lab.worker("cpu", concurrency=2, env={"JOBQ_MAX_RETRIES_ON_WORKER_LOST": str(max_retries)})
    (poison,) = lab.submit_many("crash_process", [{"mode": "exit", "tag": tag}])
    others = lab.submit_many(JOB["cpu"], [{"tag": tag, "ms": 20}] * 10)
    lab.wait_for(lambda: lab.dead_letters(), timeout=60, what="the poison job dead-lettered")
    tally = lab.wait_for_effects(tag, others, timeout=60)
    executions = lab.starts(tag).get(poison, 0)
    tally.notes.update(poison_executions=executions)
    tally.dead_lettered = len(lab.dead_letters())
    return FaultResult(
        f"poison job (os._exit) on prefork, N={max_retries}",
        tally,
        None,
        f"executed ≤ N+1 = {max_retries + 1} times, then dead-lettered; others unaffected",
        executions <= max_retries + 1 and tally.dead_lettered == 1 and tally.lost == 0,
    )


def poison_gevent(lab: Lab, max_retries: int = 2) -> FaultResult:
    """A job that kills the whole gevent worker: the delivery limit stops it (with restarts)."""
    tag = _tag()
    env = {"JOBQ_MAX_RETRIES_ON_WORKER_LOST": str(max_retries)}
    (poison,) = lab.submit_many("crash_io_worker", [{"mode": "exit", "tag": tag}])
    deadline = time.monotonic() + 150
    restarts = 0
    while not lab.dead_letters() and time.monotonic() < deadline:
        # A supervisor (compose's restart policy) restarts the worker each time it dies.
        # Not waiting for "ready": the worker may die on the poison job before it answers.
        worker = lab.worker("io", concurrency=4, env=env, name=f"restart{restarts}", ready=False)
        while worker.alive() and not lab.dead_letters() and time.monotonic() < deadline:
            time.sleep(0.2)
        restarts += 1
    executions = lab.starts(tag).get(poison, 0)
    tally = Tally(1, 0, 0, max(0, executions - 1), dead_lettered=len(lab.dead_letters()))
    tally.notes.update(poison_executions=executions, worker_restarts=restarts)
    return FaultResult(
        f"poison job (os._exit) on gevent, N={max_retries}",
        tally,
        None,
        f"executed ≤ N+1 = {max_retries + 1} times, then dead-lettered (delivery limit)",
        executions <= max_retries + 1 and tally.dead_lettered == 1,
    )


def redis_restart(lab: Lab, n: int = 200, crash: bool = True) -> FaultResult:
    """Redis killed (or stopped) and restarted with AOF: queued jobs survive, clients reconnect."""
    tag = _tag()
    waiting = lab.worker("io", concurrency=4, name="survives-restart")
    # Queued on `cpu`, where no worker consumes yet: they live only in Redis during the restart.
    ids = lab.submit_many(JOB["cpu"], [{"tag": tag, "ms": 0}] * n)
    assert lab.queued("cpu") == n
    # Redis write()s the AOF before it replies, so a process crash loses nothing even with
    # appendfsync everysec (the page cache survives it); a machine crash can lose the last
    # second unless appendfsync is always.
    (lab.redis.kill if crash else lab.redis.stop)()
    down_at = time.time()
    lab.redis.restart()
    survived = lab.queued("cpu")
    # The same producer and the same running worker go on as if nothing happened.
    after = lab.submit_many(JOB["io"], [{"tag": tag, "ms": 0}] * 20)
    lab.wait_for_effects(tag, after, timeout=60)
    reconnected_at = time.time()
    lab.worker("cpu", concurrency=2, name="after-restart")
    tally = lab.wait_for_effects(tag, ids + after, timeout=90)
    tally.notes.update(
        queued_before=n, queued_after_restart=survived, worker_survived=waiting.alive()
    )
    fsync = lab.redis.config.get("appendfsync", "everysec")
    return FaultResult(
        f"Redis {'SIGKILL' if crash else 'SIGTERM'} + restart (AOF, appendfsync {fsync}), "
        f"{n} queued",
        tally,
        reconnected_at - down_at,
        "0 queued jobs lost; worker and producer reconnect without restarting",
        tally.lost == 0 and survived == n and waiting.alive(),
    )


def producer_outage(lab: Lab) -> FaultResult:
    """`jobq submit` while Redis is unreachable: bounded retries, clear error, exit 1."""
    # A short retry window keeps the scenario quick; the default (10 s) behaves the same.
    env = {
        **lab.env,
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "JOBQ_PRODUCER_RETRY_FOR": "2",
    }
    started = time.monotonic()
    done = subprocess.run(
        jobq_argv("submit", "io_wait", "ms=1"),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    took = time.monotonic() - started
    tally = Tally(1, 0, 0, 0)
    tally.notes.update(exit_code=done.returncode, printed_id=bool(done.stdout.strip()))
    return FaultResult(
        "producer while Redis is down",
        tally,
        took,
        "exit 1 with 'cannot reach Redis' after bounded retries; no job id printed",
        done.returncode == 1 and not done.stdout.strip() and "cannot reach Redis" in done.stderr,
    )


def bad_messages(lab: Lab, sentinel_dir: str) -> FaultResult:
    """Pickle, non-JSON, truncated, headerless, unknown-job and schema-violating messages, and
    Celery's built-in ``celery.*`` tasks (each would make write_file create a sentinel)."""
    from ops.faults.messages import (
        celery_builtin_messages,
        envelope,
        pickle_envelope,
        task_body,
        task_envelope,
        task_headers,
    )

    worker = lab.worker("io", concurrency=4)
    sentinel = os.path.join(sentinel_dir, f"pickle-loaded-{_tag()}")
    body = task_body({"path": sentinel})
    messages = [
        pickle_envelope("write_file", creates=sentinel, queue="io"),
        envelope(b"{not json", queue="io", headers=task_headers("write_file")),
        envelope(body[: len(body) // 2], queue="io", headers=task_headers("write_file")),
        envelope(body, queue="io", headers={}),
        task_envelope("no_such_job", {}, queue="io"),
        task_envelope("write_file", {"paht": sentinel}, queue="io"),
        "not an envelope at all",
        *celery_builtin_messages(sentinel_dir, queue="io").values(),
    ]
    client = lab.client()
    for message in messages:
        client.lpush("io", message)
    lab.wait_for(
        lambda: len(lab.dead_letters()) >= len(messages), timeout=60, what="all dead-lettered"
    )
    reasons = Counter(d["reason"] for d in lab.dead_letters())
    builtins_ran = [name for name in os.listdir(sentinel_dir) if name.startswith("celery.")]
    executed = int(os.path.exists(sentinel)) + len(builtins_ran)
    tally = Tally(len(messages), 0, 0, 0, dead_lettered=len(lab.dead_letters()))
    tally.notes.update(
        reasons=",".join(f"{reason}×{n}" for reason, n in sorted(reasons.items())),
        executed=executed,
    )
    return FaultResult(
        f"bad messages LPUSHed into a queue ({len(messages)}, celery.* built-ins included)",
        tally,
        None,
        "none executed, all dead-lettered, worker stays up",
        not executed and tally.dead_lettered == len(messages) and worker.alive(),
    )


def idempotent_submits(lab: Lab, repeats: int = 10) -> FaultResult:
    """A producer repeating a submit (a retry after a timeout) with an idempotency key."""
    env = {**lab.env}
    ids = set()
    for _ in range(repeats):
        done = subprocess.run(
            jobq_argv("submit", "io_wait", "ms=1", "--key", "retry-me"),
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        ids.add(done.stdout.strip())
    enqueued = lab.queued("io")
    tally = Tally(repeats, 0, max(0, enqueued - 1), 0)
    tally.notes.update(distinct_ids=len(ids), enqueued=enqueued)
    return FaultResult(
        f"the same submit repeated {repeats}× with --key",
        tally,
        None,
        "one job enqueued, every repeat returns its id",
        len(ids) == 1 and enqueued == 1,
    )
