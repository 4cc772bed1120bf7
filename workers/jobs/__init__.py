"""The jobs shipped with jobq; importing this package registers them.

The fault-injection jobs (``faulty``) are registered only with ``JOBQ_FAULT_JOBS=1``: the tests
and ``jobq faults`` set it for the workers they start; production workers never have them.
"""

from workers.jobs import http, pipelines, synthetic, text
from workers.settings import get_settings

if get_settings().fault_jobs:
    from workers.jobs import faulty  # noqa: F401

__all__ = ["http", "pipelines", "synthetic", "text"]
