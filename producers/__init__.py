"""Everything a submitter uses: ``submit`` one job, ``submit_many`` a batch, follow handles.

Example::

    from producers import submit
    print(submit("io_wait", ms=100).get(timeout=10))
"""

from producers.handle import JobHandle
from producers.submit import submit, submit_many, validate
from workers.registry import UnknownJob
from workers.schema import InvalidArguments

__all__ = ["InvalidArguments", "JobHandle", "UnknownJob", "submit", "submit_many", "validate"]
