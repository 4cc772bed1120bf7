"""``jobq faults`` (or ``python -m ops.faults``): run every fault scenario, print the table.

Each scenario gets a fresh lab (its own redis-server and real workers, ops/faults/lab.py).
Worker-death scenarios use the production lease (``JOBQ_VISIBILITY_TIMEOUT=30``, renewed every
10 s, swept every 5 s) so their recovery times are the ones a deployment sees; the long-job
scenarios scale the lease down (5 s) to keep the run short, since what they count, duplicate
starts, does not depend on the scale. ``--write`` replaces the table in docs/reliability.md.

Example::

    $ jobq faults                      # about 14 minutes on 2 cores
    $ jobq faults --only redis --only poison
    $ python -m ops.faults --write docs/reliability.md   # partial runs update their rows
"""

from __future__ import annotations

import importlib
import json
import platform
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import click
from rich.console import Console

if TYPE_CHECKING:
    from ops.faults.lab import Lab
    from ops.faults.scenarios import FaultResult


def _faults(module: str) -> ModuleType:
    """``ops.faults.<module>``, imported when a scenario runs, not when `jobq` starts.

    The lab registers the fault-injection jobs (crash a process, write a file), which no other
    command may carry.
    """
    return importlib.import_module(f"ops.faults.{module}")


PRODUCTION_LEASE = {
    "JOBQ_VISIBILITY_TIMEOUT": "30",
    "JOBQ_LEASE_RENEW_INTERVAL": "10",
    "JOBQ_RESTORE_INTERVAL": "5",
}
SCALED_LEASE = {"JOBQ_VISIBILITY_TIMEOUT": "5", "JOBQ_LEASE_RENEW_INTERVAL": "1"}
BEGIN, END = "<!-- faults:begin -->", "<!-- faults:end -->"

err = Console(stderr=True)

# name -> (lab options, scenario)
SCENARIOS: dict[str, tuple[dict, Callable[[Lab, Path], FaultResult]]] = {
    "child-sigkill": ({}, lambda lab, _: _faults("scenarios").child_sigkill(lab)),
    "worker-sigkill-io": (
        {"env": PRODUCTION_LEASE},
        lambda lab, _: _faults("scenarios").worker_sigkill(lab, "io"),
    ),
    "worker-sigkill-cpu": (
        {"env": PRODUCTION_LEASE},
        lambda lab, _: _faults("scenarios").worker_sigkill(lab, "cpu"),
    ),
    "long-jobs-io": (
        {"env": SCALED_LEASE},
        lambda lab, _: _faults("scenarios").long_jobs_on_live_workers(lab, "io", lease_s=5, n=4),
    ),
    "long-jobs-cpu": (
        {"env": SCALED_LEASE},
        lambda lab, _: _faults("scenarios").long_jobs_on_live_workers(lab, "cpu", lease_s=5, n=1),
    ),
    "long-jobs-io-no-renewal": (
        {"env": SCALED_LEASE},
        lambda lab, _: _faults("scenarios").long_jobs_on_live_workers(
            lab, "io", lease_s=5, n=4, renew=False
        ),
    ),
    "rolling-restart": (
        {"env": SCALED_LEASE},
        lambda lab, _: _faults("leases").rolling_restart(lab, lease_s=5),
    ),
    "rolling-restart-no-renewal": (
        {"env": SCALED_LEASE},
        lambda lab, _: _faults("leases").rolling_restart(lab, lease_s=5, renew=False),
    ),
    "clock-skew": (
        {"env": SCALED_LEASE},
        lambda lab, _: _faults("leases").clock_skew(lab, lease_s=5),
    ),
    "blocked-hub": (
        {"env": SCALED_LEASE},
        lambda lab, _: _faults("leases").blocked_hub(lab, lease_s=5),
    ),
    "sigterm-io": ({}, lambda lab, _: _faults("scenarios").sigterm(lab, "io")),
    "sigterm-cpu": ({}, lambda lab, _: _faults("scenarios").sigterm(lab, "cpu")),
    "poison-prefork": ({}, lambda lab, _: _faults("scenarios").poison_prefork(lab)),
    "poison-gevent": ({}, lambda lab, _: _faults("scenarios").poison_gevent(lab)),
    "redis-sigkill-always": (
        {"extra": {"appendfsync": "always"}},
        lambda lab, _: _faults("scenarios").redis_restart(lab, n=1000, crash=True),
    ),
    "redis-sigterm-everysec": (
        {"extra": {"appendfsync": "everysec"}},
        lambda lab, _: _faults("scenarios").redis_restart(lab, n=1000, crash=False),
    ),
    "redis-sigkill-everysec": (
        {"extra": {"appendfsync": "everysec"}},
        lambda lab, _: _faults("scenarios").redis_restart(lab, n=1000, crash=True),
    ),
    "redis-restarts-while-running": (
        {"env": PRODUCTION_LEASE, "extra": {"appendfsync": "always"}},
        lambda lab, _: _faults("blips").redis_restarts_while_running(lab, restarts=3),
    ),
    "producer-outage": ({}, lambda lab, _: _faults("scenarios").producer_outage(lab)),
    "bad-messages": ({}, lambda lab, tmp: _faults("scenarios").bad_messages(lab, str(tmp))),
    "poison-header-in-batch": (
        {},
        lambda lab, _: _faults("poison_headers").poison_header_in_batch(lab),
    ),
    "idempotent-submits": ({}, lambda lab, _: _faults("scenarios").idempotent_submits(lab)),
    "redis-full": ({}, lambda lab, _: _faults("redis_full").redis_full(lab)),
    "lost-reply-submit": ({}, lambda lab, _: _faults("submit_edges").lost_reply_submit(lab)),
    "pipelines-full-cpu": (
        {},
        lambda lab, _: _faults("submit_edges").pipelines_against_a_full_cpu_queue(lab),
    ),
    "rate-limit-pause": ({}, lambda lab, _: _faults("rates").paused_with_parked_jobs(lab)),
}


def run(names: list[str]) -> list[FaultResult]:
    from ops.faults.lab import Lab
    from ops.faults.scenarios import FaultResult, Tally

    results = []
    for name in names:
        options, scenario = SCENARIOS[name]
        err.print(f"[bold]{name}[/] …", highlight=False)
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"jobq-fault-{name}-") as tmp:
            lab = Lab.create(Path(tmp), **options)
            try:
                result = scenario(lab, Path(tmp))
            except Exception as exc:  # a scenario that breaks is a row too, marked failed
                result = FaultResult(name, Tally(0, 0, 0, 0), None, repr(exc), False)
            finally:
                lab.close()
        err.print(
            f"  {'ok' if result.ok else 'FAILED'} in {time.monotonic() - started:.0f} s: "
            + json.dumps(result.row()),
            highlight=False,
        )
        results.append(result)
    return results


def markdown(rows: list[dict]) -> str:
    """The reliability table, one row per scenario result (``FaultResult.row()``)."""
    head = (
        "| fault | submitted | lost | duplicate effects | duplicate starts | dead-lettered "
        "| recovery (s) | promise | held |\n|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        notes = r.get("notes") or {}
        detail = f"<br>{', '.join(f'{k}={v}' for k, v in notes.items())}" if notes else ""
        recovery = "–" if r["recovery_s"] is None else f"{r['recovery_s']:.1f}"
        lines.append(
            f"| {r['fault']}{detail} | {r['submitted']} | {r['lost']} | {r['duplicate_effects']} "
            f"| {r['duplicate_starts']} | {r['dead_lettered']} | {recovery} | {r['promise']} "
            f"| {'yes' if r['ok'] else '**NO**'} |"
        )
    measured = sorted({r["measured"] for r in rows if r.get("measured")})
    if not measured:
        when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    else:
        when = measured[0] if len(measured) == 1 else f"{measured[0]} to {measured[-1]}"
    footer = (
        f"\n\nMeasured {when} on {platform.node()} ({platform.machine()}, "
        f"Python {platform.python_version()}) with `jobq faults`."
    )
    return head + "\n".join(lines) + footer


def write_table(doc: Path, results: dict[str, FaultResult]) -> None:
    """Merge these results into ``doc``'s JSON sidecar, then rewrite the table from it.

    A partial run (``--only``) updates its rows and keeps the others.
    """
    sidecar = doc.with_suffix(".json")
    stored: dict[str, dict] = json.loads(sidecar.read_text()) if sidecar.exists() else {}
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    for name, result in results.items():
        stored[name] = {**result.row(), "measured": stamp}
    ordered = {name: stored[name] for name in SCENARIOS if name in stored}
    sidecar.write_text(json.dumps(ordered, indent=2, ensure_ascii=False) + "\n")
    text = doc.read_text() if doc.exists() else f"{BEGIN}\n{END}\n"
    before, _, rest = text.partition(BEGIN)
    _, _, after = rest.partition(END)
    doc.write_text(f"{before}{BEGIN}\n{markdown(list(ordered.values()))}\n{END}{after}")


@click.command()
@click.option("--only", multiple=True, help="Scenario names containing this text (repeatable).")
@click.option("--list", "list_only", is_flag=True, help="List the scenarios and exit.")
@click.option("--write", type=click.Path(dir_okay=False, path_type=Path), help="Update a doc.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per scenario.")
def faults_command(
    only: tuple[str, ...], list_only: bool, write: Path | None, as_json: bool
) -> None:
    """Inject faults into real workers and Redis; count jobs lost and duplicated."""
    names = [n for n in SCENARIOS if not only or any(o in n for o in only)]
    if list_only:
        for name in names:
            print(name)
        return
    if not names:
        raise click.UsageError(f"no scenario matches {only}; see --list")
    results = dict(zip(names, run(names), strict=True))
    if as_json:
        for result in results.values():
            print(json.dumps(result.row()))
    else:
        print(markdown([r.row() | {"measured": ""} for r in results.values()]))
    if write is not None:
        write_table(write, results)
        err.print(f"wrote the table into {write} (results kept in {write.with_suffix('.json')})")
    if not all(r.ok for r in results.values()):
        raise SystemExit(1)
