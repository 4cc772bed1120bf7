"""The ``jobq`` console script: the command group, behind a clear error for bad configuration.

Settings are read from the environment on first use, while a command runs; a bad value
(``JOBQ_IO_CONCURRENCY=lots``) would otherwise end in a pydantic traceback. Job modules are
loaded on first use too (``JOBQ_JOBS``): one that fails to import, or a job name declared twice,
would otherwise end in an import traceback.

Example::

    $ JOBQ_IO_CONCURRENCY=lots jobq status
    error: bad setting JOBQ_IO_CONCURRENCY: Input should be a valid integer …
    $ JOBQ_JOBS=myapp.jobs jobq jobs
    error: cannot load job module 'myapp.jobs': ModuleNotFoundError: No module named 'myapp'
"""

from __future__ import annotations

import sys

from pydantic import ValidationError

EXIT_BAD_SETTINGS = 2


def run() -> None:
    """Run the ``jobq`` command group; exit 2 with one line per bad setting or job module."""
    from ops.cli import main

    try:
        main(prog_name="jobq")
    except ValidationError as exc:
        for error in exc.errors():
            where = "_".join(str(part) for part in error["loc"]).upper()
            name = "" if not where else (where if where == "REDIS_URL" else f"JOBQ_{where}")
            message = str(error["msg"]).removeprefix("Value error, ")
            print(f"error: bad setting{' ' + name if name else ''}: {message}", file=sys.stderr)
        sys.exit(EXIT_BAD_SETTINGS)
    except Exception as exc:
        # Imported here: workers.registry imports Celery's app machinery, which `jobq worker`
        # (about to exec celery) and the light commands need not pay for before they run.
        from workers.registry.errors import JobLoadError

        if not isinstance(exc, JobLoadError):
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_BAD_SETTINGS)
