"""The parts every benchmark scenario shares: a private Redis, workers, and what we measure.

A scenario runs in its own process (see :mod:`ops.bench.runner`): :func:`private_redis`
points ``REDIS_URL`` at a fresh redis-server *before* the Celery app is imported. Workers are
real processes — ``jobq worker`` for jobq's pools, plain ``celery -A … worker`` for baselines.
Completion is observed from the outside, the way Flower sees it: :class:`EventTap` subscribes
to the workers' ``task-succeeded``/``task-failed`` events, so the same measurement works for
jobq and for a Celery-defaults worker that stores no results. :class:`Meter` samples the
worker process trees with psutil for CPU seconds and peak RSS.

Example::

    with private_redis("overhead") as server, Workers(log_dir, server) as workers:
        workers.jobq("io", concurrency=100)
        with EventTap(server) as tap, Meter(workers.pids()) as meter:
            ids = publish("io_wait", "io", [{"ms": 0}] * 1000)
            tap.wait(ids, timeout=60)
        print(meter.cpu_seconds, max(tap.finished_at(ids)))
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

from ops.processes import ManagedProcess, WorkerProcess, spawn, start_worker
from ops.redis_server import RedisServer, start_redis

DONE_EVENTS = ("task-succeeded", "task-failed")


@contextlib.contextmanager
def private_redis(tag: str, **options: Any) -> Iterator[RedisServer]:
    """A redis-server for this scenario only; ``REDIS_URL`` points at it while the block runs.

    The append-only file stays on (``everysec``), as in production: its cost is part of the
    picture. Must be entered before ``workers.app`` is imported in this process.
    """
    data_dir = Path(tempfile.mkdtemp(prefix=f"jobq-bench-{tag}-"))
    server = start_redis(data_dir=data_dir, **options)  # options: e.g. maxmemory=
    previous = os.environ.get("REDIS_URL")
    os.environ["REDIS_URL"] = server.url
    try:
        yield server
    finally:
        server.stop()
        if previous is None:
            os.environ.pop("REDIS_URL", None)
        else:
            os.environ["REDIS_URL"] = previous


def publish(
    name: str, queue: str, batch: Iterable[Mapping[str, Any]], *, ignore_result: bool | None = None
) -> list[str]:
    """Enqueue jobs with jobq's fast path (plain Celery messages; any worker consumes them)."""
    from producers.fastpublish import publish_many
    from workers.app import get_app

    return publish_many(get_app(), name, queue, batch, ignore_result=ignore_result)


def purge(server: RedisServer, queues: Sequence[str]) -> None:
    """Drop what is left in ``queues`` (jobs a time-bounded run did not get to)."""
    client = server.client()
    for queue in queues:
        client.delete(queue, *(f"{queue}\x06\x16{p}" for p in (3, 6, 9)))


class Workers:
    """Start worker processes for one measurement; all are killed on exit, queues emptied.

    Killing rather than a warm shutdown: the measurement is over, and a warm shutdown would
    wait for running jobs and push reserved ones back into the queue, where the next setup
    would find them. With ``server``, the queues and kombu's unacked bookkeeping are emptied
    afterwards, so every measurement starts from an empty broker.
    """

    def __init__(self, log_dir: Path, server: RedisServer | None = None) -> None:
        self.log_dir = log_dir
        self.server = server
        self.started: list[ManagedProcess] = []

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        root = str(Path(__file__).resolve().parents[2])
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
        return {**os.environ, "PYTHONPATH": path, **(extra or {})}

    def jobq(
        self,
        pool: str,
        *,
        concurrency: int | str | None = None,
        extra: tuple[str, ...] = (),
        env: Mapping[str, str] | None = None,
        loglevel: str = "INFO",
        ready: bool = True,
    ) -> WorkerProcess:
        """``jobq worker POOL`` exactly as a user starts it, ready to consume when returned.

        With ``ready=False`` it returns at once; call :meth:`wait_ready` after starting the rest,
        so several workers boot in parallel.
        """
        worker = start_worker(
            pool,
            node_name=_node_name(pool),
            concurrency=concurrency,
            env=self.env(env),
            log_dir=self.log_dir,
            loglevel=loglevel,
            extra=extra,
        )
        return self._ready(worker, ready)

    def celery(
        self,
        app_module: str,
        *,
        pool: str,
        concurrency: int,
        queues: Sequence[str],
        extra: tuple[str, ...] = (),
        ready: bool = True,
    ) -> WorkerProcess:
        """A plain ``celery -A APP worker -P POOL -c N -Q … -E`` (events on, for the tap)."""
        node_name = _node_name(f"celery-{pool}")
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            app_module,
            "worker",
            "-P",
            pool,
            "-c",
            str(concurrency),
            "-Q",
            ",".join(queues),
            "-n",
            node_name,
            "-E",
            *extra,
        ]
        process = spawn(node_name.split("@")[0], argv, env=self.env(), log_dir=self.log_dir)
        worker = WorkerProcess(
            name=process.name,
            argv=argv,
            process=process.process,
            log_path=process.log_path,
            _log=process._log,
            node_name=node_name,
        )
        return self._ready(worker, ready)

    def _ready(self, worker: WorkerProcess, ready: bool) -> WorkerProcess:
        self.started.append(worker)
        if ready:
            worker.wait_ready(timeout=90)
        return worker

    def wait_ready(self) -> None:
        """Wait until every started worker answers a ping."""
        for worker in self.started:
            if isinstance(worker, WorkerProcess):
                worker.wait_ready(timeout=90)

    def pids(self) -> list[int]:
        return [worker.pid for worker in self.started if worker.alive()]

    def stop_all(self) -> None:
        """Kill every worker started here (its process group: main process and children)."""
        for worker in self.started:
            worker.kill()
        self.started.clear()
        if self.server is not None:
            purge(self.server, ["io", "cpu"])
            self.server.client().delete("unacked", "unacked_index")


def _node_name(prefix: str) -> str:
    return f"{prefix}-{time.monotonic_ns() % 10**9}@{socket.gethostname()}"


class EventTap:
    """Count finished jobs from the workers' task events (what Flower sees), with timestamps."""

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self.done: dict[str, float] = {}
        self.failed: set[str] = set()
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="event-tap", daemon=True)

    def __enter__(self) -> EventTap:
        self._pubsub = self.server.client().pubsub(ignore_subscribe_messages=True)
        # kombu's Redis fanout: channel "/<db>.celeryev/<routing key>". Workers with an event
        # loop (prefork) batch task events into lists on "task.multi".
        self._pubsub.psubscribe("/0.celeryev/task.*")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._pubsub.close()

    def _listen(self) -> None:
        while not self._stop.is_set():
            message = self._pubsub.get_message(timeout=0.2)
            if not message:
                continue
            envelope = json.loads(message["data"])
            body = json.loads(base64.b64decode(envelope["body"]))
            events = body if isinstance(body, list) else [body]
            with self._changed:
                for event in events:
                    if event.get("type") in DONE_EVENTS:
                        self.done[event["uuid"]] = float(event["timestamp"])
                        if event["type"] == "task-failed":
                            self.failed.add(event["uuid"])
                self._changed.notify_all()

    def count(self, ids: Iterable[str]) -> int:
        with self._changed:
            return sum(1 for job_id in ids if job_id in self.done)

    def wait(self, ids: Sequence[str], *, timeout: float) -> bool:
        """Wait until every job in ``ids`` has finished or ``timeout`` passed; True if all did."""
        wanted = set(ids)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                wanted -= self.done.keys()
                if not wanted:
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.5))

    def finished_at(self, ids: Iterable[str]) -> list[float]:
        with self._changed:
            return [self.done[job_id] for job_id in ids if job_id in self.done]


class Meter:
    """CPU seconds and peak RSS of worker process trees (main processes and their children).

    CPU counts children that already exited (``children_user``/``children_system``), so prefork
    children replaced after ``max_tasks_per_child`` still count.
    """

    def __init__(self, pids: Sequence[int], *, interval: float = 0.25) -> None:
        self.processes = [psutil.Process(pid) for pid in pids]
        self.interval = interval
        self.rss_peak = 0
        self.cpu_seconds = 0.0
        self._start = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="meter", daemon=True)

    def _cpu_now(self) -> float:
        total = 0.0
        for process in self.processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = process.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
                for child in process.children(recursive=True):
                    with contextlib.suppress(psutil.NoSuchProcess):
                        child_times = child.cpu_times()
                        total += child_times.user + child_times.system
        return total

    def _rss_now(self) -> int:
        total = 0
        for process in self.processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += process.memory_info().rss
                for child in process.children(recursive=True):
                    with contextlib.suppress(psutil.NoSuchProcess):
                        total += child.memory_info().rss
        return total

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.rss_peak = max(self.rss_peak, self._rss_now())

    def __enter__(self) -> Meter:
        self._start = self._cpu_now()
        self.rss_peak = self._rss_now()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.rss_peak = max(self.rss_peak, self._rss_now())
        self.cpu_seconds = self._cpu_now() - self._start


def summarize(samples: Sequence[float]) -> dict[str, float]:
    """Median, min and max of one metric over the runs."""
    clean = [s for s in samples if s == s]  # drop NaN
    if not clean:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan")}
    return {"median": statistics.median(clean), "min": min(clean), "max": max(clean)}
