"""``jobq report``: backlog next to service time, and throughput per pool, over a run.

From the samples :mod:`ops.sampler` recorded (a JSON Lines file, or Redis' ``jobq:samples``),
draw three stacked charts on one time axis — backlog per queue (with the oldest job's age),
wait and run time p50/p95 per queue, and jobs/s done per pool — as a PNG, plus a self-contained
HTML page (the PNG embedded, a summary table, no JavaScript). Reading it: a backlog that keeps
growing while run time stays flat means a pool is short of workers, not that jobs got slower.

Example::

    $ jobq sample --out run/samples.jsonl --duration 60 &
    $ jobq report --samples run/samples.jsonl --out run/report
    wrote run/report.png and run/report.html
"""

from __future__ import annotations

import base64
import html
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import pairwise
from pathlib import Path
from typing import Any

import click

from ops.sampler import Sampler, read_samples

COLOURS = {"io": "#1f77b4", "cpu": "#d62728"}


def series(samples: list[dict[str, Any]], queue: str, key: str) -> list[float | None]:
    """One field of one queue across the samples (None where missing)."""
    return [s["queues"].get(queue, {}).get(key) for s in samples]


def throughput(samples: list[dict[str, Any]], queue: str) -> list[float]:
    """Jobs/s finished between consecutive samples (the first point is 0)."""
    rates = [0.0]
    for before, after in pairwise(samples):
        elapsed = after["t"] - before["t"]
        done = after["queues"][queue]["finished_total"] - before["queues"][queue]["finished_total"]
        rates.append(max(0.0, done / elapsed) if elapsed > 0 else 0.0)
    return rates


def summarize(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per queue: peak backlog and oldest age, jobs done, mean and peak jobs/s, last p95s."""
    if not samples:
        return []
    duration = samples[-1]["t"] - samples[0]["t"]
    rows = []
    for queue, last in samples[-1]["queues"].items():
        done = last["finished_total"] - samples[0]["queues"][queue]["finished_total"]
        rates = throughput(samples, queue)
        ages = [a for a in series(samples, queue, "oldest_age_s") if a is not None]
        rows.append(
            {
                "queue": queue,
                "pool": last["pool"],
                "peak_backlog": max(series(samples, queue, "depth") or [0]),
                "peak_oldest_s": max(ages) if ages else None,
                "jobs_done": done,
                "mean_jobs_per_s": done / duration if duration > 0 else None,
                "peak_jobs_per_s": max(rates),
                "failed": last["failed_total"] - samples[0]["queues"][queue]["failed_total"],
                "wait_p95_s": last["wait_p95_s"],
                "run_p95_s": last["run_p95_s"],
            }
        )
    return rows


def draw_png(samples: list[dict[str, Any]], path: Path, *, title: str) -> None:
    """The three stacked charts, written to ``path``."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    start = samples[0]["t"]
    elapsed = [s["t"] - start for s in samples]
    queues = list(samples[-1]["queues"])
    fig, (backlog_ax, time_ax, rate_ax) = plt.subplots(
        3, 1, figsize=(10, 9), sharex=True, constrained_layout=True
    )
    fig.suptitle(title)
    age_ax = backlog_ax.twinx()
    for queue in queues:
        colour = COLOURS.get(queue)
        backlog_ax.plot(elapsed, series(samples, queue, "depth"), color=colour, label=queue)
        ages = [a if a is not None else 0.0 for a in series(samples, queue, "oldest_age_s")]
        age_ax.plot(elapsed, ages, color=colour, linestyle=":", label=f"{queue} oldest job age")
        for key, style, label in (
            ("wait_p95_s", "--", "wait p95"),
            ("wait_p50_s", ":", "wait p50"),
            ("run_p95_s", "-", "run p95"),
            ("run_p50_s", "-.", "run p50"),
        ):
            values = [v if v is not None else float("nan") for v in series(samples, queue, key)]
            time_ax.plot(elapsed, values, color=colour, linestyle=style, label=f"{queue} {label}")
        pool = samples[-1]["queues"][queue]["pool"]
        # The first sample has no interval before it, so its rate is left out (not drawn as 0).
        rates = throughput(samples, queue)
        rate_ax.plot(elapsed[1:], rates[1:], color=colour, label=f"pool {pool}")
    backlog_ax.set_ylabel("backlog (jobs waiting)")
    backlog_ax.set_ylim(bottom=0)
    age_ax.set_ylabel("oldest waiting job (s), dotted")
    age_ax.set_ylim(bottom=0)
    backlog_ax.legend(loc="upper left")
    backlog_ax.set_title("backlog per queue (solid) and age of its oldest job (dotted)")
    times = [
        v
        for queue in queues
        for key in ("wait_p50_s", "wait_p95_s", "run_p50_s", "run_p95_s")
        for v in series(samples, queue, key)
        if v
    ]
    if times:  # an idle run has no times to put on a log scale
        time_ax.set_ylabel("seconds (log)")
        time_ax.set_yscale("log")
        # Headroom above the lines for the legend (a decade and a bit, on the log scale).
        time_ax.set_ylim(min(times) / 2, max(times) * 30)
    else:
        time_ax.set_ylabel("seconds")
    time_ax.set_title("service time: wait (sent → started) and run, over the last minute")
    time_ax.legend(loc="upper left", fontsize="small", ncol=4)
    rate_ax.set_ylabel("jobs done per second")
    rate_ax.set_ylim(bottom=0)
    rate_ax.set_xlabel("seconds since the first sample")
    rate_ax.set_title("throughput per pool")
    rate_ax.legend(loc="upper left")
    for ax in (backlog_ax, time_ax, rate_ax):
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if value < 100 else f"{value:.0f}"
    return html.escape(str(value))


def write_html(samples: list[dict[str, Any]], png: Path, path: Path, *, title: str) -> None:
    """A self-contained page: the chart (embedded) and the summary table; no JavaScript."""
    image = base64.b64encode(png.read_bytes()).decode("ascii")
    rows = summarize(samples)
    columns = list(rows[0]) if rows else []
    header = "".join(f"<th>{html.escape(c.replace('_', ' '))}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(row[c])}</td>" for c in columns) + "</tr>" for row in rows
    )
    last = samples[-1]
    duration = last["t"] - samples[0]["t"]
    path.write_text(
        f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1040px;margin:2em auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
th{{background:#f4f4f4}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{len(samples)} samples over {duration:.0f} s. Dead letters at the end: {last["dead_letters"]};
rate-limit waits: {last["rate_limit_waits"]}. Times in seconds; p95 over the last minute of
the run.</p>
<table><tr>{header}</tr>{body}</table>
<p><img alt="backlog, service time and throughput over the run"
 src="data:image/png;base64,{image}" style="max-width:100%"></p>
</body></html>
"""
    )


def write_report(
    samples: list[dict[str, Any]], out: Path, *, title: str = "jobq run"
) -> tuple[Path, Path]:
    """Write ``out.png`` and ``out.html``; return both paths."""
    if len(samples) < 2:
        raise ValueError(f"need at least 2 samples to draw a run, got {len(samples)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    png, page = out.with_suffix(".png"), out.with_suffix(".html")
    draw_png(samples, png, title=title)
    write_html(samples, png, page, title=title)
    return png, page


@contextmanager
def charted_run(out: Path, *, title: str, interval: float = 1.0) -> Iterator[Sampler]:
    """Record samples while the block runs, then draw ``out.png`` and ``out.html``.

    The samples are kept next to them (``out-samples.jsonl``), so the chart can be redrawn.
    One line to give a benchmark or a demo its chart::

        with charted_run(Path("docs/bench/overhead"), title="overhead"):
            run_the_workload()
    """
    samples = out.with_name(out.name + "-samples.jsonl")
    samples.unlink(missing_ok=True)  # one run per file
    with Sampler(samples, interval=interval) as sampler:
        yield sampler
    write_report(sampler.samples, out, title=title)


@click.command()
@click.option(
    "--samples",
    "samples_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON Lines from `jobq sample` (default: the samples kept in Redis).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("jobq-report"),
    show_default=True,
    help="Path without extension; .png and .html are written.",
)
@click.option("--title", default="jobq run", show_default=True)
def report_command(samples_path: Path | None, out: Path, title: str) -> None:
    """Draw backlog next to service time, and throughput per pool, as PNG + HTML."""
    try:
        samples = read_samples(samples_path)
        png, page = write_report(samples, out, title=title)
    except (ValueError, KeyError) as exc:  # bad input: exit 2, as every jobq command does
        click.echo(f"error: cannot draw a report: {exc}", err=True)
        sys.exit(2)
    click.echo(f"wrote {png} and {page}")
