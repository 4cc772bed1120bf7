"""``jobq submit`` and ``jobq status``: the producer side of the command line.

Exit status: 0 done; 1 a job failed or Redis could not be reached; 2 bad input (unknown job,
bad argument, a bad line in a bulk file); 3 not (all) submitted because the queue is over its
high-water mark (``--on-full fail``, or ``wait`` past ``--gate-timeout``) or Redis is full.

Example::

    $ jobq submit io_wait ms=200 --wait
    $ jobq submit fetch_url --file urls.jsonl --wait --json
    $ jobq submit io_wait ms=200 --delay 90s
    $ jobq status --json
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, TextIO

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from producers.backpressure import GateWait, QueueFull
from producers.bulk import BulkItem, read_jobs
from producers.delay import InvalidSchedule, parse_at, parse_delay, plan_schedule
from producers.handle import JobHandle
from producers.idempotency import submit_once
from producers.outage import UNREACHABLE, ride_out
from producers.payload import refuse_oversized
from producers.status import collect_status
from producers.submit import check_fire_and_forget, stores_no_result, submit_gated, validate
from workers import correlation
from workers.broker.schedule import Schedule, scheduled
from workers.catalog import all_jobs, get_job
from workers.jobs_option import jobs_option
from workers.registry import UnknownJob
from workers.registry.schema import InvalidArguments
from workers.settings import get_settings
from workers.stores.client import get_redis

BATCH_SIZE = 500
EXIT_JOB_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_QUEUE_FULL = 3

out = Console()
err = Console(stderr=True)


def parse_assignments(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``key=value`` gives a string (the job's schema converts it); ``key:=json`` gives JSON.

    >>> parse_assignments(("ms=200", "tags:=[1, 2]"))
    {'ms': '200', 'tags': [1, 2]}
    """
    arguments: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r}: expected key=value or key:=json")
        if key.endswith(":"):
            key = key[:-1]
            try:
                arguments[key] = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise click.BadParameter(f"{pair!r}: not valid JSON ({exc.msg})") from None
        else:
            arguments[key] = raw
        if not key.isidentifier():
            raise click.BadParameter(f"{pair!r}: {key!r} is not an argument name")
    return arguments


@contextmanager
def broker_errors(*, ride_out_outage: bool = False) -> Iterator[None]:
    """Turn "Redis unreachable" into one clear line and exit status 1.

    With ``ride_out_outage`` (the submit commands) a Redis that is down is retried for
    ``JOBQ_PRODUCER_RETRY_FOR`` seconds first; commands that only look (status, top, dead …)
    answer at once, so scripted health checks stay fast.
    """
    try:
        # Fail clearly when Redis is down, before Celery's own reconnect loops (which end,
        # after ~20 s, in a generic "restart the application" error from the result store).
        if ride_out_outage:
            ride_out(get_redis().ping, on_retry=_say_retrying())
        else:
            ride_out(get_redis().ping, retry_for=0)
        yield
    except UNREACHABLE as exc:
        fail_unreachable(exc)


def fail_unreachable(exc: BaseException) -> NoReturn:
    """Print "cannot reach Redis at URL: why" and exit 1."""
    url = get_settings().redacted_redis_url()
    err.print(f"[red]error:[/] cannot reach Redis at {url}: {exc}")
    sys.exit(EXIT_JOB_FAILED)


def _say_retrying() -> Callable[[BaseException, float], None]:
    """Tell the user once that Redis is unreachable and for how long jobq will keep trying."""
    said = False

    def say(exc: BaseException, seconds_left: float) -> None:
        nonlocal said
        if not said:
            url = get_settings().redacted_redis_url()
            err.print(
                f"[yellow]Redis at {url} is unreachable ({exc}); retrying for up to "
                f"{seconds_left:.0f} s (JOBQ_PRODUCER_RETRY_FOR)[/]",
                highlight=False,
            )
            said = True

    return say


def fail_input(message: str) -> None:
    err.print(f"[red]error:[/] {message}", highlight=False)
    sys.exit(EXIT_BAD_INPUT)


def use_correlation_id(_ctx: Any, _param: Any, value: str | None) -> str | None:
    """Click callback for ``--correlation-id``: jobs this command submits carry ``value``.

    The command line is one short-lived process, so setting the correlation id for the rest of
    it is exactly the scope wanted, with no change to the command's own code.
    """
    if value:
        try:
            correlation.set_for_process(value)
        except correlation.InvalidCorrelationId as exc:
            raise click.BadParameter(str(exc)) from None
    return value


@click.command()
@click.argument("job")
@click.argument("assignments", nargs=-1)
@jobs_option
@click.option("--file", "file", type=click.File("r"), help="JSON Lines of arguments; - is stdin.")
@click.option(
    "--correlation-id",
    expose_value=False,
    callback=use_correlation_id,
    help="Tag the job(s), and every job a pipeline spawns, with this id (in logs, jobq show).",
)
@click.option("--wait", is_flag=True, help="Wait for the result(s) and print them.")
@click.option(
    "--no-result",
    "ignore_result",
    is_flag=True,
    help="Fire and forget: the worker stores no result (the job record, `jobq show ID`, "
    "still says how it ended). Not with --wait, nor for pipelines.",
)
@click.option("--timeout", type=float, default=300.0, show_default=True, help="With --wait.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--on-full",
    type=click.Choice(["wait", "fail"]),
    help="Over the queue's high-water mark: wait for it to drain, or fail (exit 3) at once. "
    "Default: JOBQ_ON_FULL (wait).",
)
@click.option(
    "--gate-timeout",
    type=float,
    help="With --on-full wait: give up (exit 3) after this many seconds. "
    "Default: JOBQ_GATE_TIMEOUT (300).",
)
@click.option(
    "--key",
    "idem_key",
    help="Idempotency key: the same job and key within JOBQ_IDEMPOTENCY_WINDOW is enqueued "
    "once; repeating the command prints the existing job's id.",
)
@click.option(
    "--delay",
    "delay_text",
    metavar="DURATION",
    help="Run later: after 90s, 5m, 2h, 1d or plain seconds. The job waits in Redis.",
)
@click.option(
    "--at",
    "at_text",
    metavar="TIME",
    help="Run later, at an ISO 8601 time with a timezone (2026-12-01T10:00:00Z). "
    "A past time runs now.",
)
def submit_command(
    job: str,
    assignments: tuple[str, ...],
    file: TextIO | None,
    wait: bool,
    ignore_result: bool,
    timeout: float,
    as_json: bool,
    on_full: str | None,
    gate_timeout: float | None,
    idem_key: str | None,
    delay_text: str | None,
    at_text: str | None,
) -> None:
    """Submit JOB with key=value arguments, or many from --file (one JSON object per line)."""
    with scheduled(_schedule_option(delay_text, at_text)):
        _submit(job, assignments, file, wait, ignore_result, timeout, as_json, on_full,
                gate_timeout, idem_key)  # fmt: skip


def _schedule_option(delay_text: str | None, at_text: str | None) -> Schedule | None:
    """``--delay``/``--at`` as a schedule (producers/delay.py); a bad value exits 2."""
    try:
        delay = parse_delay(delay_text) if delay_text is not None else None
        at = parse_at(at_text) if at_text is not None else None
        return plan_schedule(delay, at)
    except InvalidSchedule as exc:
        message = str(exc).replace("delay or at", "--delay or --at")
        # soft_wrap: one line whatever the terminal's width (rich wraps at 80 when piped).
        err.print(f"[red]error:[/] {message}", highlight=False, soft_wrap=True)
        sys.exit(EXIT_BAD_INPUT)


def _submit(
    job: str,
    assignments: tuple[str, ...],
    file: TextIO | None,
    wait: bool,
    ignore_result: bool,
    timeout: float,
    as_json: bool,
    on_full: str | None,
    gate_timeout: float | None,
    idem_key: str | None,
) -> None:
    gate: dict[str, Any] = {"on_full": on_full, "timeout": gate_timeout}
    if ignore_result or wait:
        try:
            spec = get_job(job)
            check_fire_and_forget(spec, ignore_result)
        except (UnknownJob, ValueError) as exc:
            fail_input(str(exc))
        if wait and stores_no_result(spec, ignore_result):
            why = "--no-result" if ignore_result else f"{job} (declared ignore_result)"
            fail_input(f"{why} stores no result, so there is nothing to --wait for")
        gate["ignore_result"] = ignore_result
    if file is not None:
        if assignments:
            fail_input("give arguments either as key=value or with --file, not both")
        if idem_key is not None:
            fail_input("--key applies to one job, not to --file")
        submit_bulk(job, file, wait=wait, timeout=timeout, as_json=as_json, gate=gate)
        return
    try:
        spec, checked = validate(job, parse_assignments(assignments))
    except (UnknownJob, InvalidArguments, click.BadParameter) as exc:
        fail_input(_message(exc))
    with broker_errors(ride_out_outage=True), queue_full_exit():
        if idem_key is None:
            (handle,) = submit_gated(spec, [checked], **gate)
        else:
            handle, created = submit_once(
                spec.name,
                idem_key,
                spec.queue,
                lambda: submit_gated(spec, [checked], **gate)[0],
                no_result=stores_no_result(spec, bool(gate.get("ignore_result"))),
            )
            if not created:
                err.print(f"key {idem_key!r}: already submitted as {handle.id}", highlight=False)
        if not wait:
            out.print_json(json.dumps(handle.to_dict())) if as_json else print(handle.id)
            return
        outcome = wait_for(handle, timeout)
    emit_outcome(outcome, as_json=as_json)
    if outcome["state"] != "SUCCESS":
        sys.exit(EXIT_JOB_FAILED)


def submit_bulk(
    job: str,
    file: TextIO,
    *,
    wait: bool,
    timeout: float,
    as_json: bool,
    gate: dict[str, Any] | None = None,
) -> None:
    """Validate line by line; submit the good lines in batches; report bad ones by number.

    The admission gate is checked per batch; while it holds the producer back, the progress bar
    says so and why. When the queue stays full, the lines not submitted are counted and the
    command exits 3 after printing the ids of those that were.
    """
    try:
        spec = get_job(job)
    except UnknownJob as exc:
        fail_input(str(exc))
    refused: list[BulkItem] = []
    submitted: list[tuple[int, JobHandle]] = []
    full: QueueFull | None = None
    unreachable: BaseException | None = None
    not_submitted = 0
    with broker_errors(ride_out_outage=True), _progress() as progress:
        task = progress.add_task(f"submitting {job}", total=None)
        options = {**(gate or {}), "on_wait": _show_gate_wait(progress, task)}
        batch: list[BulkItem] = []
        items = refuse_oversized(job, read_jobs(spec, file))  # producers/payload.py
        try:
            for item in items:
                if item.error:
                    refused.append(item)
                    err.print(f"[red]line {item.line}:[/] {item.error}", highlight=False)
                    continue
                batch.append(item)
                if len(batch) >= BATCH_SIZE:
                    submitted += _send(spec, batch, options)
                    progress.update(task, completed=len(submitted), description=f"submitting {job}")
                    batch = []
            submitted += _send(spec, batch, options)
        except QueueFull as exc:
            full = exc
            submitted += exc.submitted
            # Count what was not submitted exactly: the rest of the batch and the rest of the file.
            not_submitted = exc.not_submitted + sum(1 for item in items if not item.error)
        except UNREACHABLE as exc:
            # Redis stayed away longer than the retry window: still print the ids of what went
            # in before, so nothing submitted is unaccounted for.
            unreachable = exc
            not_submitted = len(batch) + sum(1 for item in items if not item.error)
        progress.update(task, completed=len(submitted), total=len(submitted))
    outcomes = wait_for_many(submitted, timeout) if wait and unreachable is None else None
    if as_json:
        for index, (line, handle) in enumerate(submitted):
            row: dict[str, Any] = {"line": line, **handle.to_dict()}
            if outcomes is not None:
                row.update(outcomes[index])
            print(json.dumps(row))
    elif outcomes is not None:
        _print_outcome_table(submitted, outcomes)
    else:
        for _, handle in submitted:
            print(handle.id)
    failed = sum(1 for o in outcomes or [] if o["state"] != "SUCCESS")
    err.print(
        f"submitted {len(submitted)} {job} job(s); refused {len(refused)} line(s)"
        + (f"; {failed} failed" if outcomes is not None else "")
        + (f"; {not_submitted} not submitted (queue full)" if full is not None else "")
        + (f"; {not_submitted} not submitted (Redis unreachable)" if unreachable else ""),
        highlight=False,
    )
    if unreachable is not None:
        fail_unreachable(unreachable)
    if full is not None:
        err.print(f"[red]error:[/] {full.reason}", highlight=False)
        sys.exit(EXIT_QUEUE_FULL)
    if refused:
        sys.exit(EXIT_BAD_INPUT)
    if failed:
        sys.exit(EXIT_JOB_FAILED)


def _send(spec: Any, batch: list[BulkItem], gate: dict[str, Any]) -> list[tuple[int, JobHandle]]:
    if not batch:
        return []
    try:
        handles = submit_gated(spec, [item.arguments or {} for item in batch], **gate)
    except QueueFull as exc:
        exc.submitted = [(item.line, h) for item, h in zip(batch, exc.submitted, strict=False)]
        raise
    return [(item.line, handle) for item, handle in zip(batch, handles, strict=True)]


def _show_gate_wait(progress: Progress, task: Any) -> Any:
    def show(wait: GateWait) -> None:
        progress.update(task, description=f"[yellow]{wait.describe()}[/]")

    return show


@contextmanager
def queue_full_exit() -> Iterator[None]:
    """Turn QueueFull (high-water mark, or Redis out of memory) into one line and exit 3."""
    try:
        yield
    except QueueFull as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(EXIT_QUEUE_FULL)


def wait_for(handle: JobHandle, timeout: float) -> dict[str, Any]:
    """Wait for one job; return ``{id, job, state, result|error}`` without raising."""
    from celery.exceptions import TimeoutError as CeleryTimeout

    try:
        value = handle.get(timeout=timeout, propagate=False)
    except CeleryTimeout:
        return {**handle.to_dict(), "state": "TIMEOUT", "error": f"no result within {timeout}s"}
    state = handle.state
    if state == "SUCCESS":
        return {**handle.to_dict(), "state": state, "result": value}
    return {**handle.to_dict(), "state": state, "error": repr(value)}


def wait_for_many(submitted: list[tuple[int, JobHandle]], timeout: float) -> list[dict[str, Any]]:
    """Wait for every job with a shared deadline, showing a progress bar."""
    import time

    deadline = time.monotonic() + timeout
    outcomes = []
    with _progress() as progress:
        task = progress.add_task("waiting for results", total=len(submitted))
        for _, handle in submitted:
            outcomes.append(wait_for(handle, max(0.01, deadline - time.monotonic())))
            progress.advance(task)
    return outcomes


def emit_outcome(outcome: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(outcome))
    elif outcome["state"] == "SUCCESS":
        result = outcome["result"]
        print(json.dumps(result, indent=2) if not isinstance(result, str) else result)
    else:
        err.print(f"[red]{outcome['state']}:[/] {outcome.get('error')}", highlight=False)


def _print_outcome_table(
    submitted: list[tuple[int, JobHandle]], outcomes: list[dict[str, Any]]
) -> None:
    table = Table("line", "job id", "state", "result")
    for (line, handle), outcome in zip(submitted, outcomes, strict=True):
        shown = outcome.get("result", outcome.get("error"))
        table.add_row(str(line), handle.id, outcome["state"], json.dumps(shown)[:80])
    out.print(table)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )


def _message(exc: Exception) -> str:
    return exc.message if isinstance(exc, click.BadParameter) else str(exc)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--timeout", type=float, default=1.0, show_default=True, help="Wait for workers.")
def status_command(as_json: bool, timeout: float) -> None:
    """Show each queue's depth, the workers online per pool and the jobs in flight."""
    with broker_errors():
        snapshot = collect_status(timeout=timeout)
    if as_json:
        print(json.dumps(snapshot, indent=2))
        return
    queues = Table("queue", "depth", "delayed", "workers", "active", "reserved", title="queues")
    for name, q in snapshot["queues"].items():
        queues.add_row(
            name, str(q["depth"]), str(q.get("delayed", 0)), str(q["workers"]),
            str(q["active"]), str(q["reserved"]),
        )  # fmt: skip
    out.print(queues)
    workers = Table("worker", "pool", "concurrency", "processed", "active", "reserved", "queues")
    for w in snapshot["workers"]:
        workers.add_row(
            w["name"], w["pool"], str(w["concurrency"]), str(w["processed"]),
            str(w["active"]), str(w["reserved"]), ",".join(w["queues"]),
        )  # fmt: skip
    out.print(workers if snapshot["workers"] else "[yellow]no workers answered[/]")
    out.print(f"in flight: {snapshot['in_flight']}   unacknowledged: {snapshot['unacked']}")
    paused = [name for name, q in snapshot["queues"].items() if q.get("paused")]
    if paused:
        out.print(f"[yellow]paused (jobq resume): {', '.join(paused)}[/]")


@click.command()
@jobs_option
def jobs_command() -> None:
    """List the jobs that can be submitted, with their pool and arguments."""
    table = Table("job", "pool", "arguments", "what it does")
    for name, spec in sorted(all_jobs().items()):
        arguments = ", ".join(f"{k}: {v}" for k, v in spec.schema.parameters().items())
        table.add_row(name, spec.kind, arguments, spec.doc)
    out.print(table)
