"""The ``jobq`` command: one entry point gathering the producer, worker and operator commands.

Example::

    $ jobq --help
    $ jobq up --demo
"""

from __future__ import annotations

import click

from ops.bench.runner import bench_command
from ops.control_cli import limits_command, pause_command, resume_command
from ops.dead_cli import dead_command
from ops.demo_site_cli import demo_site_command
from ops.exporter import exporter_command
from ops.faults.runner import faults_command
from ops.flower import flower_command
from ops.report import report_command
from ops.sampler import sample_command
from ops.show import show_command
from ops.top import top_command
from ops.up import up_command
from producers.cancel_cli import cancel_command
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
main.add_command(top_command, "top")
main.add_command(exporter_command, "exporter")
main.add_command(sample_command, "sample")
main.add_command(report_command, "report")
main.add_command(show_command, "show")
main.add_command(cancel_command, "cancel")
main.add_command(up_command, "up")
main.add_command(demo_site_command, "demo-site")
main.add_command(limits_command, "limits")
main.add_command(pause_command, "pause")
main.add_command(resume_command, "resume")
main.add_command(dead_command, "dead")
main.add_command(bench_command, "bench")
main.add_command(faults_command, "faults")
