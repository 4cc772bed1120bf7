"""Fault injection for jobq: a lab of real processes, scenarios, and ``jobq faults``.

See :mod:`ops.faults.lab`, :mod:`ops.faults.scenarios` and :mod:`ops.faults.runner`; the
results table lives in docs/reliability.md.
"""
