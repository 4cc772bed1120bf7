"""The table of pool profiles: which queue each pool consumes and how its worker is started.

This table is the single source for ``jobq worker io|cpu``, which ``jobq up`` and
``docker-compose.yml`` both run, so the local stack and compose cannot drift apart.

Example::

    >>> " ".join(worker_argv(POOLS["io"], get_settings())[2:8])
    '-m celery -A workers.app worker -P'
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from workers.settings import Settings

PoolName = Literal["io", "cpu"]


@dataclass(frozen=True, kw_only=True)
class PoolProfile:
    """How one kind of job is consumed.

    ``queue`` is the Redis list the pool reads; ``pool`` is Celery's pool implementation.
    """

    name: PoolName
    queue: str
    pool: Literal["gevent", "prefork"]
    why: str


POOLS: dict[str, PoolProfile] = {
    "io": PoolProfile(
        name="io",
        queue="io",
        pool="gevent",
        why="jobs wait on sockets; hundreds of greenlets wait cheaply in one process",
    ),
    "cpu": PoolProfile(
        name="cpu",
        queue="cpu",
        pool="prefork",
        why="jobs compute; only separate processes run Python on several cores (the GIL)",
    ),
}


def on_gevent() -> bool:
    """True in a process that gevent has monkey-patched: a worker of the I/O pool.

    Celery patches only when it sees ``-P gevent`` on the command line, so this is the one
    reliable test, in the worker and in the jobs it runs.
    """
    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover - gevent is a dependency
        return False
    return bool(monkey.is_module_patched("socket"))


def start_os_thread(target: Callable[[], None]) -> None:
    """Run ``target`` in a real OS thread, one a busy gevent hub cannot stop.

    Under gevent's monkey-patching ``threading`` makes greenlets, which a job computing
    without yielding blocks with the whole hub; the original ``_thread`` does not. In it, sleep
    with :func:`os_sleep`.
    """
    from gevent import monkey

    monkey.get_original("_thread", "start_new_thread")(target, ())


def os_sleep(seconds: float) -> None:
    """``time.sleep`` as before gevent patched it: for the threads of :func:`start_os_thread`."""
    from gevent import monkey

    monkey.get_original("time", "sleep")(seconds)


def is_gevent_pool(pool: object) -> bool:
    """True when ``pool`` (a worker's ``parent.pool`` in a bootstep) is Celery's gevent pool."""
    return pool is not None and type(pool).__module__ == "celery.concurrency.gevent"


def io_process_count(settings: Settings) -> int:
    """How many ``jobq worker io`` processes to run: ``JOBQ_IO_PROCESSES``, else one per core.

    One gevent process uses at most one core, and at ~1 ms of CPU per job that core is the
    limit long before its greenlets are (docs/benchmarks.md, scenario 1). Celery's cgroup-aware
    count is used, so a container limited to 2 CPUs runs 2 processes, not one per host core.
    """
    if settings.io_processes:
        return settings.io_processes
    from celery.utils.sysinfo import cpu_budget

    return max(1, cpu_budget(use_cgroup_quota=True).count)


def io_node_names(settings: Settings, host: str = "%h") -> list[str]:
    """Celery node names for the I/O processes: ``io-1@HOST`` … ``io-N@HOST``."""
    return [f"io-{index}@{host}" for index in range(1, io_process_count(settings) + 1)]


def worker_argv(
    profile: PoolProfile,
    settings: Settings,
    *,
    concurrency: str | int | None = None,
    node_name: str | None = None,
    loglevel: str | None = None,
    extra: tuple[str, ...] = (),
) -> list[str]:
    """The exact ``celery worker`` command line for a pool.

    The pool is chosen with ``-P`` on the command line on purpose: Celery monkey-patches for
    gevent only when it sees ``-P gevent`` in ``sys.argv``; configuring ``worker_pool`` instead
    leaves sockets blocking and the worker hangs.
    """
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers.app",
        "worker",
        "-P",
        profile.pool,
        "-Q",
        profile.queue,
        "-n",
        node_name or f"{profile.name}@%h",
        "-E",  # task events, for Flower and `jobq status`
        "--prefetch-multiplier",
        str(settings.prefetch_multiplier),
        "--loglevel",
        loglevel or settings.log_level,
        # Gossip and mingle are chatter between workers that jobq does not use; they cost CPU
        # and start-up time on every node.
        "--without-gossip",
        "--without-mingle",
    ]
    if profile.pool == "gevent":
        argv += [
            "-c",
            str(concurrency or settings.io_concurrency),
            # gevent has only a hard limit, and it fires only where the job yields to the hub
            # (workers/features/time_limits.py adds a soft limit and a watchdog).
            "--time-limit",
            str(settings.io_time_limit),
        ]
    else:
        argv += [
            "-c",
            str(concurrency or settings.cpu_concurrency),
            "-O",
            "fair",
            "--soft-time-limit",
            str(settings.cpu_soft_time_limit),
            "--time-limit",
            str(settings.cpu_time_limit),
            "--max-tasks-per-child",
            str(settings.cpu_max_tasks_per_child),
            "--max-memory-per-child",
            str(settings.cpu_max_memory_per_child),
        ]
    return [*argv, *extra]
