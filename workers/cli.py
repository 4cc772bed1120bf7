"""``jobq worker io|cpu``: start a Celery worker for one pool, exactly as compose does.

The command replaces itself with ``celery worker`` (``exec``), so the worker is the process
that receives signals: ``docker stop`` or ``kill -TERM`` reach Celery's main process directly,
which warm-shuts down (running jobs finish, reserved ones go back to the queue). Never signal the
whole process group: that kills prefork children mid-job instead of letting them finish.

Example::

    $ jobq worker io --concurrency 300
    $ jobq worker cpu --name cpu-2@%h
    $ jobq worker io --jobs myapp.jobs,billing.jobs
"""

from __future__ import annotations

import os
import shlex

import click

from workers.jobs_option import jobs_option
from workers.pools import POOLS, worker_argv
from workers.settings import get_settings


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("pool", type=click.Choice(sorted(POOLS)))
@click.option("-c", "--concurrency", help="Override the pool's concurrency (or 'auto' for cpu).")
@click.option("-n", "--name", "node_name", help="Celery node name; default POOL@%h.")
@click.option("--loglevel", help="DEBUG, INFO, WARNING, ERROR.")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    help="Log lines as text or JSON objects (sets JOBQ_LOG_FORMAT; default text).",
)
@jobs_option
@click.option("--dry-run", is_flag=True, help="Print the celery command instead of running it.")
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker_command(
    pool: str,
    concurrency: str | None,
    node_name: str | None,
    loglevel: str | None,
    log_format: str | None,
    dry_run: bool,
    celery_args: tuple[str, ...],
) -> None:
    """Run a worker for POOL (io: gevent, cpu: prefork). Extra arguments go to celery worker."""
    argv = worker_argv(
        POOLS[pool],
        get_settings(),
        concurrency=concurrency,
        node_name=node_name,
        loglevel=loglevel,
        extra=celery_args,
    )
    if dry_run:
        click.echo(shlex.join(argv))
        return
    if log_format:
        # Read by workers/features/log_context.py when Celery sets up logging in the exec'd worker.
        os.environ["JOBQ_LOG_FORMAT"] = log_format
    os.execv(argv[0], argv)
