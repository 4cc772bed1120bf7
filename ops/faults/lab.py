"""A fault lab: a private redis-server, real ``jobq worker`` processes, and a tally of effects.

Fault scenarios (``ops/faults/scenarios.py``) run in a lab, both from the tests and from
``jobq faults``. Every job used counts its starts and its completed effects in Redis by job id
(``workers/jobs/faulty.py``), so after a fault the lab can say exactly which submitted jobs were
lost (no effect), which ran twice (duplicate effects) and which started more than once.

Workers get a short lease through the environment (``JOBQ_VISIBILITY_TIMEOUT`` …) so that a
killed worker's jobs come back in seconds; the defaults are given in :data:`FAST_LEASE`.

Example::

    with Lab.create(Path("/tmp/lab")) as lab:
        lab.worker("io", concurrency=10)
        ids = lab.submit_many("record_effect", [{"tag": "t", "ms": 100}] * 50)
        tally = lab.wait_for_effects("t", ids, timeout=60)
        print(tally.lost, tally.duplicate_effects)
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from celery import Celery

from ops.processes import WorkerProcess, start_worker
from ops.redis_server import RedisServer, start_redis
from workers.jobs.faulty import EFFECTS_PREFIX, START_LOG_PREFIX, STARTS_PREFIX

# Short leases so that faults recover in seconds (the production default is a 30 s lease).
FAST_LEASE = {
    "JOBQ_VISIBILITY_TIMEOUT": "6",
    "JOBQ_LEASE_RENEW_INTERVAL": "2",
    "JOBQ_RESTORE_INTERVAL": "1",
}
QUEUES = {"io": "io", "cpu": "cpu"}


@dataclass
class Tally:
    """What happened to the jobs of one scenario."""

    submitted: int
    lost: int  # no completed effect
    duplicate_effects: int  # completed effects beyond one per job
    duplicate_starts: int  # starts beyond one per job
    dead_lettered: int = 0
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Lab:
    """A private Redis plus the workers started in it; ``close()`` stops everything."""

    redis: RedisServer
    log_dir: Path
    env: dict[str, str]
    workers: list[WorkerProcess] = field(default_factory=list)
    _producer: Celery | None = None

    @classmethod
    def create(
        cls, data_dir: Path, *, env: dict[str, str] | None = None, **redis_options: Any
    ) -> Lab:
        server = start_redis(data_dir=data_dir / "redis", **redis_options)
        worker_env = {
            **os.environ,
            **FAST_LEASE,
            **(env or {}),
            "REDIS_URL": server.url,
            "JOBQ_FAULT_JOBS": "1",  # the lab's victims are the fault-injection jobs
        }
        return cls(redis=server, log_dir=data_dir / "logs", env=worker_env)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def client(self) -> redis.Redis:
        return self.redis.client()

    @property
    def producer(self) -> Celery:
        """A Celery client bound to this lab's Redis (JSON, like every jobq producer)."""
        if self._producer is None:
            # Not the current app: jobs and canvases in this process keep resolving to jobq's.
            app = Celery(
                "jobq-lab",
                broker=self.redis.url,
                backend=self.redis.url,
                set_as_current=False,
            )
            app.conf.update(
                task_serializer="json",
                accept_content=["json"],
                broker_connection_retry_on_startup=True,
                broker_transport_options={"socket_timeout": 10, "socket_connect_timeout": 5},
            )
            self._producer = app
        return self._producer

    def worker(
        self,
        pool: str,
        *,
        concurrency: int | None = None,
        env: dict[str, str] | None = None,
        ready: bool = True,
        name: str | None = None,
    ) -> WorkerProcess:
        """Start ``jobq worker POOL`` against this lab's Redis."""
        node = f"{name or pool}-{len(self.workers)}-{os.getpid()}@lab"
        worker = start_worker(
            pool,
            node_name=node,
            concurrency=concurrency,
            env={**self.env, **(env or {})},
            log_dir=self.log_dir,
        )
        self.workers.append(worker)
        if ready:
            self.wait_ready(worker)
        return worker

    def workers_together(self, *specs: dict[str, Any]) -> list[WorkerProcess]:
        """Start one worker per ``specs`` entry (``worker``'s arguments) side by side; wait for all.

        A worker's start-up (mostly imports) takes seconds; started one after another they add
        up, started together they overlap::

            io, cpu = lab.workers_together({"pool": "io"}, {"pool": "cpu", "concurrency": 2})
        """
        started = [self.worker(**{**spec, "ready": False}) for spec in specs]
        for worker in started:
            self.wait_ready(worker)
        return started

    def wait_ready(self, worker: WorkerProcess, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not worker.alive():
                raise RuntimeError(f"worker {worker.node_name} exited:\n{worker.log_tail()}")
            try:
                if self.producer.control.ping(destination=[worker.node_name], timeout=0.5):
                    return
            except (redis.ConnectionError, OSError):
                # The pooled connection died with a Redis restart: start over with a new client.
                self._producer = None
        raise TimeoutError(f"worker {worker.node_name} not ready:\n{worker.log_tail()}")

    def submit_many(self, job: str, kwargs_list: list[dict[str, Any]]) -> list[str]:
        """Publish jobs (kwargs already valid) to the job's queue; return their ids."""
        from workers.catalog import get_job

        spec = get_job(job)
        ids = []
        with self.producer.producer_or_acquire() as producer:
            for kwargs in kwargs_list:
                result = self.producer.send_task(
                    job, kwargs=kwargs, queue=spec.queue, producer=producer
                )
                ids.append(str(result.id))
        return ids

    # --- what happened ------------------------------------------------------------------

    def effects(self, tag: str) -> dict[str, int]:
        return {k: int(v) for k, v in self.client().hgetall(EFFECTS_PREFIX + tag).items()}

    def starts(self, tag: str) -> dict[str, int]:
        return {k: int(v) for k, v in self.client().hgetall(STARTS_PREFIX + tag).items()}

    def start_log(self, tag: str) -> list[dict[str, Any]]:
        return [json.loads(e) for e in self.client().lrange(START_LOG_PREFIX + tag, 0, -1)]

    def dead_letters(self) -> list[dict[str, Any]]:
        return [json.loads(v) for v in self.client().hvals("jobq:dead")]

    def unacked(self) -> int:
        return int(self.client().hlen("unacked"))

    def queued(self, queue: str) -> int:
        return int(self.client().llen(queue))

    def tally(self, tag: str, ids: list[str]) -> Tally:
        effects, starts = self.effects(tag), self.starts(tag)
        return Tally(
            submitted=len(ids),
            lost=sum(1 for i in ids if effects.get(i, 0) == 0),
            duplicate_effects=sum(max(0, effects.get(i, 0) - 1) for i in ids),
            duplicate_starts=sum(max(0, starts.get(i, 0) - 1) for i in ids),
            dead_lettered=sum(1 for d in self.dead_letters() if d.get("id") in set(ids)),
        )

    def wait_for_effects(self, tag: str, ids: list[str], *, timeout: float) -> Tally:
        """Wait until every job has a completed effect (or the deadline); return the tally."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            effects = self.effects(tag)
            if all(effects.get(i, 0) >= 1 for i in ids):
                break
            time.sleep(0.1)
        return self.tally(tag, ids)

    def wait_for(self, condition: Any, *, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(0.05)
        raise TimeoutError(f"{what} not within {timeout}s")

    def close(self) -> None:
        """Kill every worker (process group), then stop the lab's Redis.

        Killed, not warm-stopped: the scenario has been tallied by now and the lab's Redis is
        thrown away, so nothing a worker still holds matters; an idle warm shutdown costs
        3-8 s per worker, one after another. Scenarios about shutdown signal their workers
        themselves and count what happened.
        """
        for worker in self.workers:
            worker.kill()
        self.redis.stop()


@contextmanager
def lab(data_dir: Path, **options: Any) -> Iterator[Lab]:
    """``with lab(path) as lab: …`` — a :class:`Lab` that is always closed."""
    created = Lab.create(data_dir, **options)
    try:
        yield created
    finally:
        created.close()
