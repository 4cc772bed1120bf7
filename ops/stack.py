"""The local stack behind ``jobq up``: Redis, the worker pools and Flower, started and stopped.

Start order: Redis (a private ``redis-server``, or the one ``REDIS_URL`` names), then the workers
(``jobq worker io|cpu``, the same commands compose runs), then Flower. Stop order is the reverse,
and each step waits for the one before: the workers warm-shut first (running jobs finish,
reserved ones go back to the queue) while Redis is still there to take them back, then Flower,
then Redis, whose SIGTERM flushes the append-only file. Leaving the ``with`` block stops what was
started, also when starting failed halfway, so no process is left behind.

Example::

    config = StackConfig(data_dir=Path(".jobq"), scale={"io": 2, "cpu": 1})
    with Stack(config) as stack:
        stack.start_redis()
        stack.start_workers()
        stack.start_flower()
    # here every process is gone
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shlex
import signal
import socket
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO

import redis
import urllib3
from celery.utils.nodenames import host_format

from ops.leftovers import record_processes, stop_leftovers
from ops.processes import ManagedProcess, WorkerProcess, jobq_argv, spawn, start_worker
from ops.redis_server import RedisServer, start_redis
from workers.pools import POOLS, io_process_count
from workers.settings import get_settings, redact_url
from workers.stores.client import client_for

# One gevent process per core: a gevent worker is one Python process, so its CPU per job caps it
# at one core long before its greenlets run out (docs/benchmarks.md, scenario 1). One prefork worker
# already has a child per core.
DEFAULT_SCALE = "io=auto,cpu=1"
MAX_PROCESSES_PER_POOL = 64
FLOWER_USER = "admin"


class StackError(RuntimeError):
    """A part of the stack could not start; the message says what to do."""


def parse_scale(text: str) -> dict[str, int]:
    """``"io=2,cpu=3"`` → ``{"io": 2, "cpu": 3}``; ``io=auto`` is one I/O process per core
    (``JOBQ_IO_PROCESSES`` overrides it); a pool left out keeps one process.

    >>> parse_scale("cpu=3")
    {'io': 1, 'cpu': 3}
    """
    scale = dict.fromkeys(POOLS, 1)
    for part in filter(None, (p.strip() for p in text.split(","))):
        pool, sep, raw = part.partition("=")
        pool = pool.strip()
        if not sep or pool not in POOLS:
            raise ValueError(f"{part!r}: expected POOL=N with POOL one of {', '.join(POOLS)}")
        if pool == "io" and raw.strip() == "auto":
            raw = str(io_process_count(get_settings()))
        try:
            count = int(raw)
        except ValueError:
            raise ValueError(f"{part!r}: {raw!r} is not a whole number") from None
        if not 1 <= count <= MAX_PROCESSES_PER_POOL:
            raise ValueError(
                f"{part!r}: worker processes per pool must be 1..{MAX_PROCESSES_PER_POOL}"
            )
        scale[pool] = count
    return scale


def point_this_process_at(url: str) -> None:
    """Make this process's settings, Redis client and Celery app use ``url``.

    ``jobq up`` learns the URL of the Redis it starts only now; the settings, client and app
    are built on first use from the environment, so setting it and dropping any cached copy
    is enough. Nothing has connected yet at this point, so no stale connection survives.
    """
    from workers.app import get_app
    from workers.stores.client import get_redis

    os.environ["REDIS_URL"] = url
    get_settings.cache_clear()
    get_redis.cache_clear()
    get_app.cache_clear()


def port_is_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:``port`` (set up as Flower's server would)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_for_http(url: str, process: ManagedProcess, *, timeout: float) -> int:
    """Wait until ``url`` answers any HTTP status (401 counts: the server is up); return it."""
    http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=1.0, read=5.0))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise StackError(f"{process.name} exited:\n{process.log_tail()}")
        try:
            return int(http.request("GET", url).status)
        except urllib3.exceptions.HTTPError:
            time.sleep(0.2)
    raise StackError(f"{process.name} did not answer {url} within {timeout:.0f}s")


@dataclass(frozen=True)
class StackConfig:
    """What ``jobq up`` starts. ``redis_url`` set means: use that Redis, start none."""

    data_dir: Path
    scale: Mapping[str, int] = field(default_factory=lambda: parse_scale(DEFAULT_SCALE))
    flower_port: int | None = 5555  # None: no Flower
    redis_maxmemory: str | None = "1gb"
    redis_url: str | None = None
    flower_auth: str | None = None  # "user:password"; None: generated
    worker_ready_timeout: float = 60.0
    flower_ready_timeout: float = 30.0


class Stack:
    """The processes of one local stack; use as a context manager so they are always stopped."""

    def __init__(self, config: StackConfig, *, say: Callable[[str], None] = lambda _: None) -> None:
        self.config = config
        self.say = say  # progress messages while stopping
        self.data_dir = config.data_dir
        self.log_dir = config.data_dir / "logs"
        self.env_path = config.data_dir / "env"
        self.pids_path = config.data_dir / "stack.pids"
        self.redis: RedisServer | None = None
        self.redis_url: str = config.redis_url or ""
        self.workers: list[WorkerProcess] = []
        self.flower: ManagedProcess | None = None
        self.flower_url: str | None = None
        self.flower_auth_generated = config.flower_auth is None
        self.flower_auth = config.flower_auth or f"{FLOWER_USER}:{secrets.token_urlsafe(18)}"
        self._lock: IO[str] | None = None
        self._killed = False

    # -- lifetime -------------------------------------------------------------------------

    def __enter__(self) -> Stack:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_data_dir()
        stop_leftovers(self.pids_path, say=self.say)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType
    ) -> None:
        self.stop()

    def _lock_data_dir(self) -> None:
        # Two stacks on one data dir would share Redis's append-only file and the env file.
        lock = open(self.data_dir / "stack.lock", "a+")  # noqa: SIM115 - held until stop()
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            lock.close()
            raise StackError(
                f"{self.data_dir} is in use by `jobq up` (pid {holder}): stop it, or pass another "
                "--data-dir"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        self._lock = lock

    # -- starting, in order ---------------------------------------------------------------

    def check_ports(self) -> None:
        """Fail before starting anything when Flower's port is taken."""
        port = self.config.flower_port
        if port is not None and not port_is_free(port):
            raise StackError(f"port {port} is in use: pass --flower-port PORT or --no-flower")

    def start_redis(self) -> str:
        """Start a private Redis, or check the one ``REDIS_URL`` names; return its URL."""
        if self.config.redis_url:
            try:
                client_for(self.config.redis_url, socket_connect_timeout=5, socket_timeout=5).ping()
            except redis.RedisError as exc:
                raise StackError(
                    f"cannot reach REDIS_URL {redact_url(self.config.redis_url)}: {exc}"
                ) from None
        else:
            self.redis = start_redis(
                data_dir=self.data_dir / "redis", maxmemory=self.config.redis_maxmemory
            )
            self.redis_url = self.redis.url
            self._write_pids()
        point_this_process_at(self.redis_url)
        return self.redis_url

    def child_env(self) -> dict[str, str]:
        """The environment every process of the stack gets: ours, pointed at the stack's Redis."""
        env = {**os.environ, "REDIS_URL": self.redis_url}
        env.pop("FLOWER_BASIC_AUTH", None)  # only Flower needs it
        return env

    def start_workers(self) -> list[WorkerProcess]:
        """Start every worker process (``wait_for_workers`` then waits until they answer)."""
        for pool, count in self.config.scale.items():
            for index in range(1, count + 1):
                worker = start_worker(
                    pool,
                    node_name=host_format(f"{pool}-{index}@%h"),
                    env=self.child_env(),
                    log_dir=self.log_dir,
                )
                self.workers.append(worker)
                self._write_pids()
        return self.workers

    def wait_for_workers(self) -> None:
        """Wait until every worker answers a Celery ping: from then on it consumes its queue."""
        for worker in self.workers:
            try:
                worker.wait_ready(timeout=self.config.worker_ready_timeout)
            except (RuntimeError, TimeoutError) as exc:
                raise StackError(str(exc)) from None

    def start_flower(self) -> str | None:
        """Start Flower behind basic auth; return its URL (``wait_for_flower`` waits for it)."""
        port = self.config.flower_port
        if port is None:
            return None
        self.check_ports()  # again: something may have taken it while the workers started
        argv = jobq_argv("flower", "--port", str(port), "--db", str(self.data_dir / "flower.db"))
        # Credentials travel in the environment, never on a command line `ps` shows.
        env = {**self.child_env(), "FLOWER_BASIC_AUTH": self.flower_auth}
        self.flower = spawn("flower", argv, env=env, log_dir=self.log_dir)
        self._write_pids()
        self.flower_url = f"http://127.0.0.1:{port}"
        return self.flower_url

    def wait_for_flower(self) -> None:
        """Wait until Flower answers HTTP (401 without credentials is up)."""
        if self.flower and self.flower_url:
            wait_for_http(
                self.flower_url + "/", self.flower, timeout=self.config.flower_ready_timeout
            )

    def write_env_file(self) -> Path:
        """Write ``<data-dir>/env`` (owner-only) for ``source .jobq/env`` in another terminal."""
        lines = [f"export REDIS_URL={shlex.quote(self.redis_url)}"]
        if os.environ.get("JOBQ_JOBS"):  # `jobq up --jobs`: producers load the workers' jobs
            lines.append(f"export JOBQ_JOBS={shlex.quote(os.environ['JOBQ_JOBS'])}")
        if self.flower_url:
            lines += [
                f"export FLOWER_BASIC_AUTH={shlex.quote(self.flower_auth)}",
                f"export JOBQ_FLOWER_URL={shlex.quote(self.flower_url)}",
            ]
        # Create it owner-only before writing: it holds passwords.
        fd = os.open(self.env_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as env_file:
            env_file.write("\n".join(lines) + "\n")
        return self.env_path

    def _write_pids(self) -> None:
        # So the next `jobq up` (or an operator) can stop them if this `jobq up` gets killed.
        pids = {"jobq-up": os.getpid()}
        if self.redis:
            pids["redis"] = self.redis.process.pid
        pids |= {worker.name: worker.pid for worker in self.workers}
        if self.flower:
            pids["flower"] = self.flower.pid
        record_processes(self.pids_path, pids)

    # -- stopping, in order ---------------------------------------------------------------

    def worker_grace(self) -> float:
        """How long a warm shutdown may take: the longest job time limit, plus a margin."""
        settings = get_settings()
        return max(settings.io_time_limit, settings.cpu_time_limit) + 15

    def stop(self) -> None:
        """Stop in order: workers (warm), Flower, Redis. Safe to call more than once."""
        # After a hurry everything is already dead: no "stopping…" messages that would mislead.
        say = self.say if not self._killed else lambda _: None
        with contextlib.suppress(FileNotFoundError):
            self.env_path.unlink()  # its URL and passwords stop working now
        try:
            self._stop_workers(say)
        finally:
            try:
                if self.flower:
                    say("stopping Flower")
                    self.flower.stop(timeout=15)
                    self.flower.kill()
            finally:
                try:
                    if self.redis:
                        say("stopping Redis (flushing the append-only file)")
                        self.redis.stop(timeout=30)
                        with contextlib.suppress(FileNotFoundError):
                            (self.redis.data_dir / f"redis-{self.redis.port}.conf").unlink()
                finally:
                    if self._lock:
                        self._lock.close()
                        self._lock = None

    def _stop_workers(self, say: Callable[[str], None]) -> None:
        alive = [worker for worker in self.workers if worker.alive()]
        if alive:
            say(
                f"stopping {len(alive)} worker(s): warm shutdown, running jobs finish and "
                "reserved ones go back to the queue (Ctrl-C again to kill them)"
            )
            # All at once: each waits for its own running jobs, so the total is the longest.
            with ThreadPoolExecutor(max_workers=len(alive)) as pool:
                list(pool.map(lambda w: w.stop(timeout=self.worker_grace()), alive))
        for worker in self.workers:
            worker.kill()  # sweeps any pool child left in the worker's process group

    def kill_now(self) -> None:
        """SIGKILL everything still running, without waiting (a second Ctrl-C: hurry).

        Safe inside a signal handler: it only sends signals; the ordered stop that is
        running then finds the processes gone.
        """
        self._killed = True
        for process in [*self.workers, *([self.flower] if self.flower else [])]:
            if process.process.returncode is not None:
                continue  # already reaped: its pid may belong to someone else now
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        if self.redis and self.redis.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.redis.process.pid, signal.SIGKILL)
