"""The Celery app as Flower loads it: jobq's app on kombu's plain Redis transport.

Workers use a guarded Redis transport (``broker_transport`` in workers/app.py, from
workers/rejection.py) so that bad queue items are dead-lettered instead of dropped. Flower only
reads events and queue lengths, but it picks its broker client for ``/api/queues/length`` and the
Broker page by the URL scheme of the connection, and a custom transport's scheme
(``workers.rejection:GuardedRedisTransport://``) makes both answer "broker is not supported".
Flower therefore loads this module: the same app and settings, the standard ``redis://`` scheme.

Example::

    $ celery -A ops.flower_app flower      # what `jobq flower` runs
"""

from __future__ import annotations

from workers.app import app

# Flower consumes no jobs, so it needs none of the guard; None = pick by the URL scheme.
app.conf.broker_transport = None

__all__ = ["app"]
