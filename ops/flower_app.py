"""The Celery app as Flower loads it: jobq's app and settings on kombu's plain Redis transport.

Workers use jobq's own Redis transport (``broker_transport`` in workers/app.py). Flower only
reads events and queue lengths, but it picks its broker client for ``/api/queues/length`` and the
Broker page by the URL scheme of the connection, and a custom transport's scheme
(``workers.broker.batched:RedisTransport://``) makes both answer "broker is not supported".
Flower therefore loads this module: an app built by the same composition root, with kombu
choosing the transport from the standard ``redis://`` scheme.

Example::

    $ celery -A ops.flower_app flower      # what `jobq flower` runs
"""

from __future__ import annotations

from workers.app import create_app

app = create_app(stock_transport=True)

__all__ = ["app"]
