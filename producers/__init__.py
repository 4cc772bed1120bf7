"""Everything a submitter uses: ``submit`` one job, ``submit_many`` a batch, follow handles.

Example::

    from producers import QueueFull, correlation, submit

    with correlation("order-17"):
        handle = submit("fetch_and_analyze", url="http://127.0.0.1:8000/page/1", key="order-17")
    print(handle.get(timeout=30)["words"])
"""

from producers.backpressure import QueueFull, RedisFull
from producers.cancel import cancel
from producers.handle import JobHandle
from producers.idempotency import IdempotencyConflict
from producers.submit import submit, submit_many, validate
from workers.correlation import correlation
from workers.registry import UnknownJob
from workers.registry.schema import InvalidArguments

__all__ = [
    "IdempotencyConflict",
    "InvalidArguments",
    "JobHandle",
    "QueueFull",
    "RedisFull",
    "UnknownJob",
    "cancel",
    "correlation",
    "submit",
    "submit_many",
    "validate",
]
