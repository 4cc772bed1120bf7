"""The ``jobq`` command: one entry point gathering the producer, worker and operator commands.

Example::

    $ jobq --help
    $ jobq up --demo
"""

from __future__ import annotations

import importlib
from typing import Any

import click

# Each command, as "module:attribute", imported only when it runs (or when help lists it):
# `jobq worker` then starts without importing Flower, rich, the benchmarks and the producers'
# modules, which took ~0.35 s of every worker's and every command's start.
COMMANDS = {
    "submit": "producers.cli:submit_command",
    "status": "producers.cli:status_command",
    "jobs": "producers.cli:jobs_command",
    "worker": "workers.cli:worker_command",
    "flower": "ops.flower:flower_command",
    "top": "ops.top:top_command",
    "exporter": "ops.exporter:exporter_command",
    "sample": "ops.sampler:sample_command",
    "report": "ops.report:report_command",
    "show": "ops.show:show_command",
    "cancel": "producers.cancel_cli:cancel_command",
    "up": "ops.up:up_command",
    "demo-site": "ops.demo_site_cli:demo_site_command",
    "limits": "ops.control_cli:limits_command",
    "pause": "ops.control_cli:pause_command",
    "resume": "ops.control_cli:resume_command",
    "dead": "ops.dead_cli:dead_command",
    "bench": "ops.bench.runner:bench_command",
    "faults": "ops.faults.runner:faults_command",
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use (click's documented lazy pattern)."""

    def __init__(self, *args: Any, lazy: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*self.lazy, *(name for name in super().list_commands(ctx) if name not in self.lazy)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            module, _, attribute = self.lazy[cmd_name].partition(":")
            self.add_command(getattr(importlib.import_module(module), attribute), cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="jobq")
def main() -> None:
    """jobq: I/O jobs on gevent, CPU jobs on prefork, Redis in between, Flower on top."""
