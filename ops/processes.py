"""Worker processes started the way a user starts them (``jobq worker io|cpu``), and stopped right.

Used by the local stack (``jobq up``) and by the tests. Each process gets its own session, so a
Ctrl-C in the terminal reaches only ``jobq up``, which then shuts things down in order. Stopping
signals only the worker's main process (``jobq worker`` execs into ``celery worker``, so it is
that pid): a TERM to the whole process group would kill prefork children mid-job.

Example::

    worker = start_worker("io", node_name="io-1@%h", env=env)
    worker.wait_ready(timeout=30)
    worker.stop()          # warm shutdown: running jobs finish, reserved ones go back
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


@dataclass
class ManagedProcess:
    """A child process we started, with its log file."""

    name: str
    argv: list[str]
    process: subprocess.Popen[bytes]
    log_path: Path | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the process's log, for error messages."""
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the main process only."""
        if self.alive():
            os.kill(self.pid, signum)

    def stop(self, timeout: float = 60.0) -> int | None:
        """TERM the main process, wait up to ``timeout``, then kill what is left."""
        self.signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None
        finally:
            self._close()

    def kill(self) -> None:
        """SIGKILL the whole process group (main process and children), as an OOM kill would."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        self._close()

    def _close(self) -> None:
        if self._log and not self._log.closed:
            self._log.close()


def spawn(
    name: str,
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    log_dir: Path | None = None,
    cwd: Path | None = None,
) -> ManagedProcess:
    """Start ``argv`` in its own session (in ``cwd``), output to ``log_dir/name.log``."""
    log_path = (log_dir / f"{name}.log") if log_dir else None
    log = None
    if log_path:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "ab")  # noqa: SIM115 - closed by ManagedProcess
    process = subprocess.Popen(
        argv,
        env=env,
        stdout=log if log else None,
        stderr=subprocess.STDOUT if log else None,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        cwd=cwd,
    )
    return ManagedProcess(name=name, argv=argv, process=process, log_path=log_path, _log=log)


def jobq_argv(*args: str) -> list[str]:
    """``jobq ARGS`` with the same interpreter as this process (works inside any venv)."""
    return [sys.executable, "-m", "ops", *args]


@dataclass
class WorkerProcess(ManagedProcess):
    """A ``jobq worker`` process and its Celery node name."""

    node_name: str = ""

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until the worker answers a Celery ping (it consumes from then on)."""
        from workers.app import get_app

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"worker {self.node_name} exited:\n{self.log_tail()}")
            replies = get_app().control.ping(destination=[self.node_name], timeout=0.5)
            if replies:
                return
        raise TimeoutError(f"worker {self.node_name} not ready in {timeout}s:\n{self.log_tail()}")


def start_worker(
    pool: str,
    *,
    node_name: str | None = None,
    concurrency: int | str | None = None,
    env: dict[str, str] | None = None,
    log_dir: Path | None = None,
    loglevel: str | None = None,
    extra: tuple[str, ...] = (),
) -> WorkerProcess:
    """Start ``jobq worker POOL`` as its own process; call ``wait_ready`` before relying on it."""
    node_name = node_name or f"{pool}-{os.getpid()}-{time.monotonic_ns()}@{socket.gethostname()}"
    args = ["worker", pool, "--name", node_name]
    if loglevel:  # otherwise the worker's own JOBQ_LOG_LEVEL applies
        args += ["--loglevel", loglevel]
    if concurrency is not None:
        args += ["--concurrency", str(concurrency)]
    argv = jobq_argv(*args, *extra)
    started = spawn(node_name.split("@")[0], argv, env=env, log_dir=log_dir)
    return WorkerProcess(
        name=started.name,
        argv=argv,
        process=started.process,
        log_path=started.log_path,
        _log=started._log,
        node_name=node_name,
    )
