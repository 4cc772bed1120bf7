"""What the back-pressure and rate-limit benchmarks share: a private Redis, a sampler, output.

Each benchmark (``flood``, ``gate_overhead``, ``ratelimit_accuracy``) runs against its own
redis-server, started here *before* the Celery app is imported, so ``REDIS_URL`` points every
producer and worker of the run at it. Results go to ``docs/`` as JSON next to a PNG chart.

Example::

    with private_redis("flood") as server:
        with Sampler(0.5, lambda: {"depth": server.client().llen("io")}) as sampler:
            ...
        print(sampler.rows)
"""

from __future__ import annotations

import json
import os
import platform
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ops.processes import ManagedProcess

DOCS = Path(__file__).resolve().parents[2] / "docs"


class Sampler(threading.Thread):
    """Calls ``probe()`` every ``interval`` seconds in the background; rows get a ``t`` column."""

    def __init__(self, interval: float, probe: Callable[[], dict[str, float]]) -> None:
        super().__init__(name="bench-sampler", daemon=True)
        self.interval, self.probe = interval, probe
        self.rows: list[dict[str, float]] = []
        self._stop_event = threading.Event()
        self._started_at = time.monotonic()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                row = self.probe()
            except Exception as exc:  # a sample lost to a busy Redis is not worth a crash
                row = {"error": 1.0}
                print(f"sampler: {exc}")
            self.rows.append({"t": round(time.monotonic() - self._started_at, 3), **row})
            self._stop_event.wait(self.interval)

    def __enter__(self) -> Sampler:
        self._started_at = time.monotonic()
        self.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop_event.set()
        self.join(timeout=10)


def machine() -> dict[str, Any]:
    """Where the numbers come from."""
    import celery
    import kombu
    import psutil

    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "celery": celery.__version__,
        "kombu": kombu.__version__,
        "platform": platform.platform(),
    }


def save_json(name: str, data: dict[str, Any]) -> Path:
    """Write ``docs/<name>.json`` (with the machine description) and return its path."""
    DOCS.mkdir(exist_ok=True)
    path = DOCS / f"{name}.json"
    path.write_text(json.dumps(_finite({"machine": machine(), **data}), indent=2) + "\n")
    return path


def _finite(value: Any) -> Any:
    # JSON has no NaN: a missing sample is written as null.
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def wait_ready(worker: ManagedProcess, timeout: float = 60.0) -> None:
    """Wait for a worker's "ready." log line.

    Not ``WorkerProcess.wait_ready`` (a Celery ping): that imports the app, which would stay bound
    to the first run's Redis in a benchmark that starts several servers in turn.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not worker.alive():
            raise RuntimeError(f"worker {worker.name} exited:\n{worker.log_tail()}")
        if " ready." in worker.log_tail(100_000):
            return
        time.sleep(0.1)
    raise TimeoutError(f"worker {worker.name} not ready in {timeout}s:\n{worker.log_tail()}")
