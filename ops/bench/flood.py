"""Flood: one producer submits 200 000 small jobs as fast as it can against a slow consumer.

Run twice, each on a fresh redis-server with the same slow consumer (one I/O worker, 200
greenlets, ``io_wait(100 ms)``; it drains ~240 jobs/s, see docs/backpressure.md): once with
the admission gate off (``JOBQ_IO_HIGH_WATER=0``), once with a high-water mark of 5 000
(low-water 4 000). Every half second it samples the queue's backlog, Redis ``used_memory`` and
the producer's RSS. The producer is a separate process that streams the jobs in batches of
1 000 (``submit_many``) and keeps no handles, as a real bulk producer would. The gated run is
bounded by time (``--budget``): at the consumer's pace 200 000 jobs would take hours.

Writes ``docs/backpressure-flood.json`` and ``docs/backpressure-flood.png``.

Example::

    $ .venv/bin/python -m ops.bench.flood              # about 2 minutes
    $ .venv/bin/python -m ops.bench.flood --jobs 50000 --budget 30
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from ops.bench.backpressure_harness import DOCS, Sampler, save_json, wait_ready
from ops.bench.harness import private_redis
from ops.processes import start_worker

BATCH = 1000
HIGH_WATER, LOW_WATER = 5000, 4000


def produce(jobs: int, budget: float) -> None:
    """The producer process: stream ``jobs`` io_wait jobs in batches until done or out of time."""
    from producers import submit_many
    from producers.backpressure import QueueFull

    started = time.monotonic()
    submitted = 0
    while submitted < jobs:
        left = budget - (time.monotonic() - started)
        if left <= 0:
            break
        batch = [{"ms": 100}] * min(BATCH, jobs - submitted)
        try:
            submitted += len(submit_many("io_wait", batch, on_full="wait", timeout=left))
        except QueueFull as full:
            submitted += len(full.submitted)
            break
    print(json.dumps({"submitted": submitted, "seconds": round(time.monotonic() - started, 2)}))


def run(label: str, *, gate: bool, jobs: int, budget: float, log_dir: Path) -> dict[str, Any]:
    env_gate = {
        "JOBQ_IO_HIGH_WATER": str(HIGH_WATER if gate else 0),
        "JOBQ_IO_LOW_WATER": str(LOW_WATER if gate else 0),
    }
    with private_redis("flood-gate" if gate else "flood-nogate") as server:
        env = {**os.environ, **env_gate}
        worker = start_worker("io", concurrency=200, env=env, log_dir=log_dir)
        wait_ready(worker)
        client = server.client()
        producer = subprocess.Popen(
            [sys.executable, "-m", "ops.bench.flood", "--produce", "--jobs", str(jobs),
             "--budget", str(budget)],
            env=env, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        process = psutil.Process(producer.pid)

        def probe() -> dict[str, float]:
            try:
                rss = process.memory_info().rss / 2**20
            except psutil.NoSuchProcess:
                rss = 0.0
            if not rss:  # exited (a zombie reports 0): no sample rather than a false drop
                rss = float("nan")
            return {
                "backlog": float(client.llen("io")),
                "used_memory_mb": client.info("memory")["used_memory"] / 2**20,
                "producer_rss_mb": rss,
            }

        with Sampler(0.5, probe) as sampler:
            out, _ = producer.communicate(timeout=budget + 600)
        worker.kill()  # the backlog is not worth draining
        summary = json.loads(out.strip().splitlines()[-1])
    rows = [r for r in sampler.rows if "error" not in r]
    result = {
        "label": label,
        "gate": gate,
        **summary,
        "jobs_per_s": round(summary["submitted"] / max(summary["seconds"], 1e-9)),
        "peak_backlog": max(r["backlog"] for r in rows),
        # What the slow consumer took meanwhile (submitted minus what is still queued); only
        # meaningful for the gated run, whose producer runs until the end of the sampling.
        "consumed_per_s": round((summary["submitted"] - rows[-1]["backlog"]) / rows[-1]["t"], 1)
        if gate
        else None,
        "peak_used_memory_mb": round(max(r["used_memory_mb"] for r in rows), 1),
        "peak_producer_rss_mb": round(
            max(r["producer_rss_mb"] for r in rows if r["producer_rss_mb"] == r["producer_rss_mb"]),
            1,
        ),
        "samples": rows,
    }
    print(
        f"{label}: submitted {result['submitted']} in {result['seconds']}s; peak backlog "
        f"{result['peak_backlog']:.0f}, Redis {result['peak_used_memory_mb']} MB, producer RSS "
        f"{result['peak_producer_rss_mb']} MB"
    )
    return result


def chart(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("backlog", "backlog (jobs in the io queue)"),
        ("used_memory_mb", "Redis used_memory (MB)"),
        ("producer_rss_mb", "producer RSS (MB)"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for axis, (column, title) in zip(axes, panels, strict=True):
        for result in results:
            rows = result["samples"]
            axis.plot([r["t"] for r in rows], [r[column] for r in rows], label=result["label"])
        axis.set_title(title)
        axis.set_xlabel("seconds")
        axis.grid(alpha=0.3)
        axis.set_ylim(bottom=0)
    axes[0].legend()
    consumed = next((r["consumed_per_s"] for r in results if r["consumed_per_s"]), 0)
    fig.suptitle(
        f"Flood: one producer, {results[0]['submitted']:,} jobs, slow consumer (~{consumed:.0f} "
        f"jobs/s): gate off vs high-water {HIGH_WATER:,} / low-water {LOW_WATER:,}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200_000)
    parser.add_argument("--budget", type=float, default=60.0, help="seconds for the gated run")
    parser.add_argument("--produce", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.produce:
        produce(args.jobs, args.budget)
        return
    log_dir = Path("/tmp") / f"jobq-flood-{os.getpid()}"
    started = time.monotonic()
    results = [
        run("no gate", gate=False, jobs=args.jobs, budget=3600, log_dir=log_dir),
        run(f"high-water {HIGH_WATER:,}", gate=True, jobs=args.jobs, budget=args.budget,
            log_dir=log_dir),
    ]  # fmt: skip
    save_json("backpressure-flood", {"jobs": args.jobs, "results": results})
    chart(results, DOCS / "backpressure-flood.png")
    print(f"done in {time.monotonic() - started:.0f}s: docs/backpressure-flood.png")


if __name__ == "__main__":
    main()
