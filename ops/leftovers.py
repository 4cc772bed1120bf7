"""The processes a ``jobq up`` started, recorded so that none outlives a crash of ``jobq up``.

``jobq up`` starts every part in its own session (so a Ctrl-C reaches only ``jobq up``, which
then stops them in order). The flip side: if ``jobq up`` itself is SIGKILLed, its Redis and
workers keep running, and a new stack on the same data dir would start a second Redis on the
same append-only file. So each process is recorded in ``<data-dir>/stack.pids`` with its start
time (pids are reused), and the next ``jobq up`` stops what is left, in the usual order.

Example::

    record_processes(Path(".jobq/stack.pids"), {"redis": 4242, "io-1": 4250})
    stop_leftovers(Path(".jobq/stack.pids"), say=print)   # at the next start
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path

import psutil

# Stop order, as in a normal shutdown: workers first (Redis must be up to take jobs back).
_LAST = ("flower", "redis")


def record_processes(path: Path, pids: Mapping[str, int]) -> None:
    """Write ``{name: {"pid", "create_time"}}`` for the processes that exist."""
    recorded = {}
    for name, pid in pids.items():
        with contextlib.suppress(psutil.Error):
            recorded[name] = {"pid": pid, "create_time": psutil.Process(pid).create_time()}
    path.write_text(json.dumps(recorded, indent=1) + "\n")


def read_processes(path: Path) -> dict[str, dict[str, float]]:
    """What :func:`record_processes` wrote; empty when there is no readable record."""
    try:
        recorded = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return recorded if isinstance(recorded, dict) else {}


def still_running(path: Path) -> dict[str, psutil.Process]:
    """The recorded processes that still run (same pid AND same start time)."""
    alive = {}
    for name, entry in read_processes(path).items():
        try:
            process = psutil.Process(int(entry["pid"]))
            if process.create_time() == entry["create_time"] and process.is_running():
                alive[name] = process
        except (psutil.Error, KeyError, TypeError, ValueError):
            continue
    return alive


def stop_leftovers(
    path: Path,
    *,
    say: Callable[[str], None],
    skip: tuple[str, ...] = ("jobq-up",),
    grace: float = 60,
) -> list[str]:
    """TERM the recorded processes that still run, workers first; kill them after ``grace``."""
    alive = {n: p for n, p in still_running(path).items() if n not in skip}
    stopped = []
    for group in (
        [n for n in alive if n not in _LAST],
        [n for n in _LAST if n in alive],
    ):
        processes = [alive[name] for name in group]
        for name, process in zip(group, processes, strict=True):
            say(f"stopping {name} (pid {process.pid}), left running by an earlier `jobq up`")
            with contextlib.suppress(psutil.Error):
                process.terminate()  # the main process only: a warm shutdown for workers
        _, survivors = psutil.wait_procs(processes, timeout=grace)
        for process in survivors:
            with contextlib.suppress(psutil.Error):
                for child in process.children(recursive=True):
                    child.kill()  # a prefork worker's pool processes
                process.kill()
        stopped += group
    return stopped
