"""Benchmarks: jobq against plain Celery, side by side on this machine (``jobq bench``).

Scenarios: ``io_jobs``, ``cpu_jobs``, ``isolation``, ``mixed``, ``overhead``,
``submission``; results go to docs/benchmarks.md. See :mod:`ops.bench.runner`.
"""
