"""The jobs shipped with jobq; importing this package declares them.

The fault-injection jobs (``faulty``) are not imported here: they are declared only where
``JOBQ_FAULT_JOBS`` is on (the tests and ``jobq faults``), which adds ``workers.jobs.faulty`` to
the job modules (:func:`workers.catalog.job_modules`); production workers never have them.
"""

from workers.jobs import http, pipelines, synthetic, text

__all__ = ["http", "pipelines", "synthetic", "text"]
