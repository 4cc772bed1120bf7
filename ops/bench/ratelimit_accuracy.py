"""Rate-limit accuracy: jobq's cluster-wide limit versus Celery's per-worker ``rate_limit``.

The same limit ("20/s", then "2/s") with 1, 2 and 4 worker processes:

* **Celery**: a plain ``celery worker`` per process (prefork, one child, Celery's defaults)
  running a no-op task declared with ``rate_limit``
  (:mod:`ops.bench.ratelimit_celery_app`);
* **jobq**: ``jobq worker io`` per process (gevent, 100 greenlets) running ``io_wait(1 ms)``
  limited with ``jobq limits set io_wait RATE``.

Each run queues more jobs than the window can take, waits for the first completion, and counts
completions (their timestamps) over the next ``--window`` seconds after a 1-second warm-up; it
also samples ``inspect reserved``: how many jobs the workers hold in memory, waiting, meanwhile.
One redis-server for the whole benchmark, emptied between runs.

Writes ``docs/ratelimit-accuracy.json`` and ``docs/ratelimit-accuracy.png``.

Example::

    $ .venv/bin/python -m ops.bench.ratelimit_accuracy          # about 2 minutes (both rates)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from ops.bench.backpressure_harness import DOCS, Sampler, save_json, wait_ready
from ops.bench.harness import private_redis
from ops.processes import ManagedProcess, spawn, start_worker
from ops.redis_server import RedisServer
from workers.stores.rate_limits import parse_rate

RATES = ("20/s", "2/s")
WARMUP = 1.0


def start_celery(count: int, log_dir: Path, rate: str) -> list[ManagedProcess]:
    env = {**os.environ, "RL_RATE": rate}
    argv = [sys.executable, "-m", "celery", "-A", "ops.bench.ratelimit_celery_app", "worker",
            "-P", "prefork", "-c", "1", "--loglevel", "INFO", "--without-gossip",
            "--without-mingle"]  # fmt: skip
    return [
        spawn(f"celery-rl-{i}", [*argv, "-n", f"celery-rl-{i}@%h"], env=env, log_dir=log_dir)
        for i in range(count)
    ]


def start_jobq(count: int, log_dir: Path, rate: str) -> list[ManagedProcess]:
    return [
        start_worker("io", node_name=f"jobq-rl-{i}@%h", concurrency=100, log_dir=log_dir,
                     env=dict(os.environ))
        for i in range(count)
    ]  # fmt: skip


def held_in_workers() -> dict[str, float]:
    """Jobs the workers hold in memory, waiting (Celery's ``inspect reserved``, all workers)."""
    from ops.bench.ratelimit_celery_app import app

    replies = app.control.inspect(timeout=0.3).reserved() or {}
    return {"reserved": float(sum(len(jobs) for jobs in replies.values()))}


def completions_celery(server: RedisServer, _: list[str]) -> list[float]:
    from ops.bench.ratelimit_celery_app import DONE_KEY

    return sorted(float(t) for t in server.client().lrange(DONE_KEY, 0, -1))


def completions_jobq(_: RedisServer, ids: list[str]) -> list[float]:
    from workers.stores.job_records import read_records

    # Parked runs leave a record too (state IGNORED); count the runs that did the work.
    records = read_records(ids)
    return sorted(r["finished_at"] for r in records if r.get("state") == "SUCCESS")


def run(
    server: RedisServer, kind: str, rate_text: str, processes: int, window: float, log_dir: Path
) -> dict:
    target = parse_rate(rate_text).per_second()
    client = server.client()
    client.flushall()
    workers = (start_celery if kind == "celery" else start_jobq)(processes, log_dir, rate_text)
    try:
        for worker in workers:
            wait_ready(worker)
        jobs = int(target * processes * (window + WARMUP + 4))  # more than any setup can do
        if kind == "celery":
            from ops.bench.ratelimit_celery_app import rl_noop

            ids = [rl_noop.delay().id for _ in range(jobs)]
            done = completions_celery
        else:
            from producers import submit_many
            from workers.stores.rate_limits import set_limit

            set_limit("io_wait", rate_text)
            ids = [h.id for h in submit_many("io_wait", [{"ms": 1}] * jobs)]
            done = completions_jobq
        deadline = time.monotonic() + 60
        while not done(server, ids) and time.monotonic() < deadline:
            time.sleep(0.05)
        with Sampler(0.2, held_in_workers) as sampler:
            time.sleep(WARMUP + window + 0.5)
        finished = done(server, ids)
    finally:
        for worker in workers:
            worker.kill()
    start = finished[0] + WARMUP
    counted = [t for t in finished if start <= t < start + window]
    rate = len(counted) / window
    result = {
        "rate": rate_text,
        "kind": kind,
        "processes": processes,
        "observed_per_s": round(rate, 2),
        "error_pct": round((rate - target) / target * 100, 1),
        "peak_reserved": max(r["reserved"] for r in sampler.rows if "reserved" in r),
    }
    print(result, flush=True)
    return result


def chart(results: list[dict[str, Any]], rates: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = sorted({r["processes"] for r in results})
    fig, axes = plt.subplots(1, len(rates), figsize=(7 * len(rates), 4.5), squeeze=False)
    width = 0.38
    bars_of = (
        (-width / 2, "celery", "Celery rate_limit (per worker)"),
        (width / 2, "jobq", "jobq limit (cluster-wide, Redis)"),
    )
    for axis, rate in zip(axes[0], rates, strict=True):
        for offset, kind, label in bars_of:
            values = [
                next(
                    r["observed_per_s"]
                    for r in results
                    if (r["rate"], r["kind"], r["processes"]) == (rate, kind, n)
                )
                for n in counts
            ]
            bars = axis.bar([i + offset for i in range(len(counts))], values, width, label=label)
            axis.bar_label(bars, fmt="%.1f")
        target = parse_rate(rate).per_second()
        axis.axhline(target, color="black", linestyle="--", linewidth=1, label=f"limit {rate}")
        axis.set_xticks(range(len(counts)), [f"{n} worker process(es)" for n in counts])
        axis.set_ylabel("observed jobs/s (completions)")
        axis.set_title(f'The same "{rate}" limit as worker processes are added')
        axis.legend(fontsize=8)
        axis.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--rates", default=",".join(RATES))
    parser.add_argument("--window", type=float, default=6.0, help="seconds counted per run")
    args = parser.parse_args()
    rates = args.rates.split(",")
    log_dir = Path("/tmp") / f"jobq-rl-bench-{os.getpid()}"
    results = []
    with private_redis("ratelimit") as server:
        for rate in rates:
            for processes in (int(n) for n in args.processes.split(",")):
                for kind in ("celery", "jobq"):
                    results.append(run(server, kind, rate, processes, args.window, log_dir))
    save_json("ratelimit-accuracy", {"window_s": args.window, "results": results})
    chart(results, rates, DOCS / "ratelimit-accuracy.png")
    print("| limit | worker processes | Celery rate_limit | jobq | reserved: Celery / jobq |")
    print("|---|---|---|---|---|")
    for rate in rates:
        for processes in sorted({r["processes"] for r in results}):
            row = {
                r["kind"]: r for r in results if (r["rate"], r["processes"]) == (rate, processes)
            }
            celery, jobq = row["celery"], row["jobq"]
            print(
                f"| {rate} | {processes} | {celery['observed_per_s']} ({celery['error_pct']:+}%) | "
                f"{jobq['observed_per_s']} ({jobq['error_pct']:+}%) | "
                f"{celery['peak_reserved']:.0f} / {jobq['peak_reserved']:.0f} |"
            )


if __name__ == "__main__":
    main()
