"""The benchmark runner behind ``python -m ops.bench`` and ``jobq bench``.

The parent process only orchestrates: for each scenario it starts ``python -m ops.bench.runner
--one SCENARIO`` (the child starts a private Redis, then imports the app), collects the JSON the
child writes, and renders ``benchmarks.md`` plus one chart per scenario.

Example::

    $ jobq bench isolation --rounds 3
"""

from __future__ import annotations

import importlib
import json
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import click

# Scenario name -> module in ops.bench. The flood / gate / rate-limit benchmarks of
# docs/backpressure.md live next to these but run on their own (python -m ops.bench.flood …).
SCENARIOS = {
    "io_jobs": "ops.bench.io_jobs",
    "cpu_jobs": "ops.bench.cpu_jobs",
    "isolation": "ops.bench.isolation",
    "mixed": "ops.bench.mixed",
    "overhead": "ops.bench.overhead",
    "submission": "ops.bench.submission",
}
DEFAULT_OUT = Path(__file__).resolve().parents[2] / "docs"


def run_one(name: str, *, rounds: int, tiny: bool, result_path: Path) -> None:
    """In this (child) process: start a private Redis, run scenario ``name``, write its JSON."""
    from ops.bench.harness import private_redis
    from ops.bench.report import machine

    module = importlib.import_module(SCENARIOS[name])
    log_dir = Path(tempfile.mkdtemp(prefix=f"jobq-bench-{name}-logs-"))
    started = time.monotonic()
    info = machine()
    with private_redis(name) as server:
        # Imported here: the sampler's Redis client must see this scenario's REDIS_URL.
        from ops.report import charted_run

        result: dict | None = None
        chart = result_path.with_name(f"{name}-report")
        try:
            # Backlog next to service time over the whole scenario (jobq report), beside the
            # scenario's own comparison chart.
            with charted_run(chart, title=f"jobq bench: {name}"):
                result = module.run(server, rounds=rounds, tiny=tiny, log_dir=log_dir)
        except ValueError as exc:  # a run too short to sample is still a result
            if result is None:
                raise
            click.echo(f"no backlog chart for {name}: {exc}", err=True)
    result["seconds"] = round(time.monotonic() - started, 1)
    result["tiny"] = tiny
    result["machine"] = info
    result_path.parent.mkdir(parents=True, exist_ok=True)
    result_path.write_text(json.dumps(result, indent=1, default=str))


def run_scenarios(
    names: Sequence[str], *, rounds: int, tiny: bool, out: Path, command: str
) -> Path:
    """Run each scenario in its own child process, then write the report; return its path."""
    from ops.bench.report import write_report

    results_dir = out / "bench"
    for name in names:
        click.echo(f"== {name} ({rounds} round(s){', tiny' if tiny else ''})", err=True)
        argv = [sys.executable, "-m", "ops.bench.runner", "--one", name, "--rounds", str(rounds)]
        argv += ["--result", str(results_dir / f"{name}.json")] + (["--tiny"] if tiny else [])
        completed = subprocess.run(argv, check=False)
        if completed.returncode != 0:
            raise click.ClickException(f"scenario {name} failed (exit {completed.returncode})")
    return write_report(out, command=command)


@click.command()
@click.argument("scenarios", nargs=-1, type=click.Choice(sorted(SCENARIOS)))
@click.option(
    "--rounds",
    default=3,
    show_default=True,
    type=click.IntRange(1, 20),
    help="Rounds per scenario; every setup runs once per round, side by side.",
)
@click.option("--tiny", is_flag=True, help="Tiny sizes (a smoke run; numbers mean nothing).")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_OUT,
    show_default=True,
    help="Where benchmarks.md, charts and JSON go.",
)
def bench_command(scenarios: tuple[str, ...], rounds: int, tiny: bool, out: Path) -> None:
    """Benchmark jobq against plain Celery; write OUT/benchmarks.md and one chart per scenario.

    Each scenario gets its own redis-server and worker processes on this machine.
    """
    names = list(scenarios) or list(SCENARIOS)
    command = shlex.join(
        ["jobq", "bench", *scenarios, "--rounds", str(rounds)] + (["--tiny"] if tiny else [])
    )
    report = run_scenarios(names, rounds=rounds, tiny=tiny, out=out, command=command)
    click.echo(f"wrote {report}")


@click.command()
@click.option("--one", "name", required=True, type=click.Choice(sorted(SCENARIOS)))
@click.option("--rounds", default=3, type=int)
@click.option("--tiny", is_flag=True)
@click.option("--result", "result_path", required=True, type=click.Path(path_type=Path))
def _child(name: str, rounds: int, tiny: bool, result_path: Path) -> None:
    run_one(name, rounds=rounds, tiny=tiny, result_path=result_path)


def main() -> None:
    """``python -m ops.bench``."""
    bench_command(prog_name="python -m ops.bench")


if __name__ == "__main__":
    _child()
