"""``jobq top``: a live terminal view of whether the system keeps up, refreshed every second.

Per queue: backlog, age of the oldest waiting job, unacknowledged messages, jobs/s done,
p50/p95 wait and run time over the last minute, retries and failures. Per worker: its pool,
concurrency, and the jobs it is running (active) and holding (reserved). Then the running jobs
that report progress, each with its bar and note. Then dead letters and rate-limit waits. Queue
figures and progress come from Redis (cheap, every second); worker figures (and which jobs are
running) from Celery's remote control, polled in a background thread because each inspect round
waits for replies.

Example::

    $ jobq top
    $ jobq top --once          # one frame, e.g. for a script or a bug report
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import click
import redis
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ops.sampler import collect_sample
from producers.status import collect_workers
from workers.stores.client import get_redis
from workers.stores.progress import Progress, read_progress

REFRESH_S = 1.0
WORKER_POLL_S = 2.0
MAX_PROGRESS_ROWS = 10


@dataclass
class TopState:
    """What one frame shows; ``rates`` are jobs/s per queue since the previous frame."""

    sample: dict[str, Any]
    workers: list[dict[str, Any]] | None
    rates: dict[str, float]
    # Running jobs that reported progress: (worker, job name, job id, progress), newest first.
    progress: list[tuple[str, str, str, Progress]] = field(default_factory=list)


@dataclass
class TopCollector:
    """Builds successive :class:`TopState` frames, remembering the last one for the rates."""

    previous: dict[str, Any] | None = None
    workers: list[dict[str, Any]] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def collect(self) -> TopState:
        sample = collect_sample(get_redis())
        rates = jobs_per_second(self.previous, sample)
        self.previous = sample
        with self._lock:
            workers = self.workers
        return TopState(
            sample=sample, workers=workers, rates=rates, progress=running_progress(workers or [])
        )

    def poll_workers(self, timeout: float = 0.5) -> None:
        found = collect_workers(timeout=timeout)
        with self._lock:
            self.workers = found


def running_progress(workers: list[dict[str, Any]]) -> list[tuple[str, str, str, Progress]]:
    """The progress of every running job that reported some, most recently updated first.

    The running jobs are the workers' own answer (``inspect active``, polled in the background);
    their progress is read fresh for each frame, in one ``MGET``.
    """
    running = [
        (worker["name"], job.get("name") or "?", job["id"])
        for worker in workers
        for job in worker.get("running", [])
    ]
    found = read_progress([job_id for _, _, job_id in running])
    rows = [(*job, value) for job, value in zip(running, found, strict=True) if value is not None]
    return sorted(rows, key=lambda row: row[3].updated, reverse=True)


def jobs_per_second(previous: dict[str, Any] | None, current: dict[str, Any]) -> dict[str, float]:
    """Finished jobs per second per queue between two samples.

    Without a previous sample, the rate over the sample's window (the last minute) stands in.
    """
    rates = {}
    for queue, now in current["queues"].items():
        before = (previous or {}).get("queues", {}).get(queue)
        elapsed = current["t"] - previous["t"] if previous else 0.0
        if before is not None and elapsed > 0:
            rates[queue] = max(0.0, (now["finished_total"] - before["finished_total"]) / elapsed)
        else:
            rates[queue] = now["done_last_window"] / current["window_s"]
    return rates


def _seconds(value: float | None) -> str:
    """Compact durations for narrow terminals: 53ms, 2.1s, 75s, 3.2m."""
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f}ms"
    if value < 10:
        return f"{value:.1f}s"
    if value < 120:
        return f"{value:.0f}s"
    return f"{value / 60:.1f}m"


def render(state: TopState) -> Group:
    """The frame: a queue table, a worker table and a one-line footer."""
    sample = state.sample
    # One space between columns (the box's divider, no padding) and two-line headers: the frame
    # fits an 80-column terminal.
    queues = Table(
        title="queues", title_justify="left", box=box.SIMPLE_HEAD, padding=0, show_edge=False
    )
    queues.add_column("queue")
    for column in ("backlog", "oldest\njob", "unacked", "parked", "done/s"):
        queues.add_column(column, justify="right")
    for column in ("wait\np50", "wait\np95", "run\np50", "run\np95", "retries", "failed"):
        queues.add_column(column, justify="right")
    for name, q in sample["queues"].items():
        queues.add_row(
            name,
            str(q["depth"]),
            _seconds(q["oldest_age_s"]),
            str(q["unacked"]),
            str(q.get("parked", 0)),
            f"{state.rates.get(name, 0.0):.1f}",
            _seconds(q["wait_p50_s"]),
            _seconds(q["wait_p95_s"]),
            _seconds(q["run_p50_s"]),
            _seconds(q["run_p95_s"]),
            str(q["retries_total"]),
            Text(str(q["failed_total"]), style="red" if q["failed_total"] else ""),
        )
    workers = Table(
        title="workers", title_justify="left", box=box.SIMPLE_HEAD, padding=0, show_edge=False
    )
    for column in ("worker", "pool", "concurrency", "active", "reserved", "processed"):
        workers.add_column(column, justify="left" if column in ("worker", "pool") else "right")
    if state.workers is None:
        workers.add_row("(asking workers…)", "", "", "", "", "")
    elif not state.workers:
        workers.add_row(Text("no worker answered", style="yellow"), "", "", "", "", "")
    for worker in state.workers or []:
        workers.add_row(
            worker["name"],
            worker["pool"],
            str(worker["concurrency"]),
            str(worker["active"]),
            str(worker["reserved"]),
            str(worker["processed"]),
        )
    parts: list[Any] = [queues, "", workers, ""]
    if state.progress:
        parts += [render_progress(state.progress), ""]
    dead = sample["dead_letters"]
    footer = Text.assemble(
        ("dead letters: ", "bold"),
        (str(dead), "red" if dead else ""),
        (" · rate-limit waits: ", "bold"),
        str(sample["rate_limit_waits"]),
        (
            f" · p50/p95: last {sample['window_s']:.0f} s · "
            f"{time.strftime('%H:%M:%S', time.localtime(sample['t']))}",
            "dim",
        ),
    )
    return Group(*parts, footer)


def render_progress(rows: list[tuple[str, str, str, Progress]]) -> Table:
    """Running jobs with their progress: job, id, worker, a bar and ``done/total note``."""
    table = Table(
        title="progress", title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1), show_edge=False
    )
    for column in ("job", "id", "worker", "", "done"):
        table.add_column(column)
    for worker, name, job_id, value in rows[:MAX_PROGRESS_ROWS]:
        bar = ProgressBar(total=value.total, completed=value.done, width=20) if value.total else ""
        table.add_row(name, job_id[:8], worker, bar, value.describe())
    if len(rows) > MAX_PROGRESS_ROWS:
        table.add_row(f"… {len(rows) - MAX_PROGRESS_ROWS} more", "", "", "", "")
    return table


def _frame(collector: TopCollector) -> Group | Text:
    # A Redis restart or blip shows as one red line, and top carries on when Redis is back.
    try:
        return render(collector.collect())
    except redis.RedisError as exc:
        return Text(f"Redis unreachable ({exc}); retrying every second…", style="red")


def _poll_workers_forever(collector: TopCollector, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            collector.poll_workers()
        except Exception:  # a broker blip shows as "no worker answered"; it must not end top
            with collector._lock:
                collector.workers = []
        stop.wait(WORKER_POLL_S)


@click.command()
@click.option("--once", is_flag=True, help="Print one frame and exit.")
@click.option("--interval", type=float, default=REFRESH_S, show_default=True, help="Seconds.")
def top_command(once: bool, interval: float) -> None:
    """Live view: backlog, oldest job, wait/run p50/p95, workers, dead letters (Ctrl-C quits)."""
    from producers.cli import broker_errors

    console = Console()
    collector = TopCollector()
    with broker_errors():
        if once:
            collector.poll_workers(timeout=1.0)
            console.print(render(collector.collect()))
            return
        stop = threading.Event()
        poller = threading.Thread(target=_poll_workers_forever, args=(collector, stop), daemon=True)
        poller.start()
        try:
            # The alternate screen, like top(1): frames of changing height leave no debris.
            with Live(_frame(collector), console=console, screen=True) as live:
                while True:
                    time.sleep(interval)
                    live.update(_frame(collector))
        except KeyboardInterrupt:
            pass
        finally:
            stop.set()
