"""``jobq up``: the whole system on this machine with one command, stopped in order on Ctrl-C.

It starts Redis (private, or ``REDIS_URL``), the worker pools (``--scale io=N,cpu=M``) and
Flower behind basic auth, writes ``<data-dir>/env`` for other terminals, optionally runs the
demo workload with a progress bar and a summary table, then keeps running until Ctrl-C or
SIGTERM. The first signal stops submitting and shuts down in order (workers warm, Flower,
Redis); a second one kills what is left.

Example::

    $ jobq up --demo                       # Ctrl-C to stop
    $ jobq up --scale io=2,cpu=3 --no-flower
    $ jobq up --demo --exit-after-demo --demo-jobs 100   # CI: exits 1 if a demo job failed
    $ jobq up --jobs myapp.jobs            # your job modules too (JOBQ_JOBS)
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import click
from rich.console import Console
from rich.markup import escape

from ops.demo import build_workload, group_by_row, submit_workload, wait_for_jobs
from ops.demo_summary import summarize, summary_table, wall_time
from ops.local_site import LocalSite, serve_local_site
from ops.redis_server import RedisUnavailable
from ops.report import write_report
from ops.sampler import Sampler
from ops.stack import DEFAULT_SCALE, Stack, StackConfig, StackError, parse_scale
from producers.status import collect_workers
from workers.catalog import load_jobs
from workers.jobs_option import jobs_option
from workers.pools import POOLS
from workers.settings import redact_url

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_KILLED = 130  # the shell's convention for "ended by Ctrl-C"
DEFAULT_DEMO_JOBS = 800

console = Console(highlight=False)


class ShutdownRequested(Exception):
    """Ctrl-C or SIGTERM asked the stack to stop."""


class Interrupts:
    """First Ctrl-C or SIGTERM: stop (in order). Second: hurry, kill what is left.

    The first signal raises :class:`ShutdownRequested` only inside :meth:`waiting` sections;
    elsewhere (while a process is being spawned) it is noted and acted on at the next check,
    so no process can be started without the stack knowing about it.
    """

    def __init__(self) -> None:
        self.requested: str | None = None
        self.hurried = False
        self.on_hurry: Callable[[], None] = lambda: None
        self._may_raise = False

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is None:
            self.requested = signal.Signals(signum).name
            if self._may_raise:
                self._may_raise = False
                raise ShutdownRequested(self.requested)
        elif not self.hurried:
            self.hurried = True
            console.print("[bold red]second signal: killing everything now")
            self.on_hurry()

    def check(self) -> None:
        """Raise :class:`ShutdownRequested` if a signal arrived."""
        if self.requested:
            raise ShutdownRequested(self.requested)

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """A section that only waits: a signal interrupts it at once."""
        self.check()
        self._may_raise = True
        try:
            yield
        finally:
            self._may_raise = False

    def begin_shutdown(self) -> None:
        """From now on any signal means hurry."""
        self._may_raise = False
        self.requested = self.requested or "shutdown"


def _ok(part: str, text: str) -> None:
    console.print(f"[green]✓[/] [bold]{part:<7}[/] {text}")


def bring_up(stack: Stack, interrupts: Interrupts) -> None:
    """Start Redis, the workers and Flower, printing one status line as each comes up."""
    config = stack.config
    stack.check_ports()
    url = stack.start_redis()
    if stack.redis:
        limit = config.redis_maxmemory
        _ok(
            "Redis",
            f"{redact_url(url)}  private, append-only" + (f", maxmemory {limit}" if limit else ""),
        )
    else:
        _ok("Redis", f"{redact_url(url)}  from REDIS_URL")
    interrupts.check()
    stack.start_workers()
    with interrupts.waiting():
        stack.wait_for_workers()
    facts = _worker_facts()
    for worker in stack.workers:
        pool = worker.node_name.split("-")[0]
        info = facts.get(worker.node_name, {})
        detail = f"{info.get('pool', POOLS[pool].pool)}, concurrency {info.get('concurrency', '?')}"
        _ok("worker", f"{worker.node_name}  {pool} pool: {detail}")
    interrupts.check()
    if stack.start_flower():
        with interrupts.waiting():
            stack.wait_for_flower()
        if stack.flower_auth_generated:
            user, _, password = stack.flower_auth.partition(":")
            auth = f"user [bold]{user}[/], password [bold]{password}[/] (shown once)"
        else:
            auth = "credentials from FLOWER_BASIC_AUTH"
        _ok("Flower", f"{stack.flower_url}  {auth}")
    env_path = stack.write_env_file()
    console.print(f"  Data and logs in {stack.data_dir}/")
    console.print(f"  From another terminal: [bold]source {env_path}; jobq status[/]")


def _worker_facts() -> dict[str, dict]:
    """Pool and concurrency as each worker reports them (not as configured)."""
    try:
        return {w["name"]: w for w in collect_workers(timeout=1.0)}
    except Exception:  # only decoration for the status lines
        return {}


def run_demo(
    site: LocalSite, jobs_count: int, interrupts: Interrupts, report_dir: Path | None = None
) -> int:
    """Submit the demo, show progress, print the summary; 0 when every job succeeded.

    With ``report_dir``, samples are recorded during the demo and drawn as
    ``demo-report.png``/``.html`` there (backlog next to service time, ops/report.py).
    """
    console.rule("demo")
    workload = build_workload(jobs_count, site)
    console.print(f"submitting {len(workload)} jobs (local site {site.url()})")
    samples = report_dir / "demo-samples.jsonl" if report_dir else None
    if samples:
        samples.unlink(missing_ok=True)  # one run per file
    with Sampler(samples, interval=1.0) if samples else contextlib.nullcontext() as sampler:
        jobs = submit_workload(workload, should_stop=lambda: interrupts.requested is not None)
        interrupts.check()
        with interrupts.waiting():
            records = wait_for_jobs(jobs, console=console, timeout=60 + jobs_count * 0.5)
    if sampler is not None and report_dir is not None:
        _draw_demo_report(sampler.samples, report_dir)
    grouped = group_by_row(jobs, records)
    rows = summarize(grouped)
    console.print(summary_table(rows))
    failed = sum(row.failed + row.unfinished for row in rows)
    wall = wall_time([steps for row in grouped.values() for steps in row])
    rate = f" ({len(jobs) / wall:.1f} jobs/s)" if wall else ""
    wall_text = f"{wall:.2f} s" if wall is not None else "-"
    console.print(f"{len(jobs)} jobs, {failed} failed or unfinished, wall time {wall_text}{rate}")
    return EXIT_OK if failed == 0 else EXIT_FAILED


def _draw_demo_report(samples: list[dict], report_dir: Path) -> None:
    # The chart is a bonus: a missing matplotlib (the "charts" extra) must not fail the demo.
    try:
        png, page = write_report(samples, report_dir / "demo-report", title="jobq up --demo")
    except (ImportError, ValueError) as exc:
        console.print(f"[yellow]no demo report:[/] {exc}")
        return
    console.print(f"Backlog next to service time: {page} (and {png.name})")


def keep_running(stack: Stack, interrupts: Interrupts) -> None:
    """Wait for Ctrl-C or SIGTERM; warn once if a part of the stack dies meanwhile."""
    console.print("[bold]The stack is up.[/] Ctrl-C or SIGTERM stops it in order.")
    reported: set[str] = set()
    with interrupts.waiting():
        while True:
            parts = [*stack.workers, *([stack.flower] if stack.flower else [])]
            for part in parts:
                if not part.alive() and part.name not in reported:
                    reported.add(part.name)
                    console.print(f"[red]{part.name} exited; see {part.log_path}")
            time.sleep(1)


@click.command()
@click.option("--demo", is_flag=True, help="Submit the demo workload and print its summary.")
@click.option(
    "--exit-after-demo", is_flag=True, help="Stop in order after the demo (implies --demo)."
)
@click.option(
    "--demo-jobs",
    type=click.IntRange(1, 100_000),
    default=DEFAULT_DEMO_JOBS,
    show_default=True,
    help="How many jobs the demo submits.",
)
@click.option(
    "--scale",
    default=DEFAULT_SCALE,
    show_default=True,
    help="Worker processes per pool, e.g. io=2,cpu=3.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".jobq"),
    show_default=True,
    help="Redis data, logs, Flower state and the env file.",
)
@click.option("--flower-port", type=click.IntRange(1, 65535), default=5555, show_default=True)
@click.option("--no-flower", is_flag=True, help="Do not start Flower.")
@jobs_option
@click.option(
    "--redis-maxmemory",
    default="1gb",
    show_default=True,
    help="Private Redis memory cap; when full it refuses new jobs (noeviction).",
)
def up_command(
    demo: bool,
    exit_after_demo: bool,
    demo_jobs: int,
    scale: str,
    data_dir: Path,
    flower_port: int,
    no_flower: bool,
    redis_maxmemory: str,
) -> None:
    """Run Redis, an I/O and a CPU worker pool and Flower here, until Ctrl-C."""
    try:
        scale_by_pool = parse_scale(scale)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--scale") from None
    # Every job module loads here first: a bad one stops `jobq up` before anything is started
    # (one line, exit 2: ops/entry.py), not each worker after Redis and Flower came up.
    load_jobs()
    config = StackConfig(
        data_dir=data_dir,
        scale=scale_by_pool,
        flower_port=None if no_flower else flower_port,
        redis_maxmemory=redis_maxmemory or None,
        redis_url=os.environ.get("REDIS_URL") or None,
        flower_auth=os.environ.get("FLOWER_BASIC_AUTH") or None,
    )
    interrupts = Interrupts()
    interrupts.install()
    code = EXIT_OK

    def say(text: str) -> None:
        console.print(f"[yellow]…[/] {text}")

    try:
        site_context = serve_local_site() if demo or exit_after_demo else contextlib.nullcontext()
        with site_context as site, Stack(config, say=say) as stack:
            interrupts.on_hurry = stack.kill_now
            try:
                bring_up(stack, interrupts)
                if site is not None:
                    code = run_demo(site, demo_jobs, interrupts, report_dir=data_dir)
                if not exit_after_demo:
                    keep_running(stack, interrupts)
            except (RedisUnavailable, StackError) as exc:
                # Said before the stack stops, so the reason is not buried under "stopping…".
                console.print(f"[red]could not start the stack:[/] {escape(str(exc))}")
                code = EXIT_FAILED
            finally:
                if interrupts.requested:
                    console.print(f"[yellow]{interrupts.requested}[/]: shutting down in order")
                interrupts.begin_shutdown()
    except ShutdownRequested:
        pass  # the stack has stopped in order
    except StackError as exc:  # the data dir is in use
        console.print(f"[red]could not start the stack:[/] {escape(str(exc))}")
        code = EXIT_FAILED
    if interrupts.hurried:
        code = EXIT_KILLED
    console.print("stack stopped" if code != EXIT_KILLED else "stack killed")
    raise SystemExit(code)
