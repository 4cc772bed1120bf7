"""The ``jobq`` command: one entry point gathering the producer, worker and operator commands.

Example::

    $ jobq --help
    $ jobq up --demo
"""

from __future__ import annotations

import click

from ops.flower import flower_command
from producers.cli import jobs_command, status_command, submit_command
from workers.cli import worker_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="jobq")
def main() -> None:
    """jobq: I/O jobs on gevent, CPU jobs on prefork, Redis in between, Flower on top."""


main.add_command(submit_command, "submit")
main.add_command(status_command, "status")
main.add_command(jobs_command, "jobs")
main.add_command(worker_command, "worker")
main.add_command(flower_command, "flower")
