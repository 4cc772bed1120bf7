"""The Celery application: ``celery -A workers.app worker|inspect|flower`` works as usual.

Both pools and every producer share this app, so they agree on serialization, queues and
delivery semantics. Each setting below says why it differs from Celery's default; the values
come from :mod:`workers.settings` (the environment).

Example::

    $ celery -A workers.app inspect ping
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import celeryd_init
from kombu import Queue

from workers.pools import POOLS
from workers.redis_client import tls_options
from workers.settings import get_settings


def redis_conf(url: str) -> dict[str, Any]:
    """The Celery settings that follow from the Redis URL: broker, result backend, TLS.

    One place, used by :func:`create_app` and by ``jobq up`` when it re-points a running
    process at the Redis it started.
    """
    # rediss:// means TLS with a verified certificate (kombu alone would not verify it),
    # optionally against a private CA and with a client certificate (workers/redis_client.py).
    tls = tls_options(url)
    return {
        "broker_url": url,
        # Celery's Redis backend, each result written in one atomic round trip instead of a GET
        # then SET+PUBLISH (workers/resultstore.py): result writes fell from 17% to 12% of a
        # gevent worker's samples on no-op jobs (py-spy, docs/benchmarks.md).
        "result_backend": f"workers.resultstore:AtomicRedisBackend+{url}",
        "broker_use_ssl": tls,
        "redis_backend_use_ssl": tls,
    }


def publish_retry_policy(retry_for: float) -> dict[str, float]:
    """Celery's ``task_publish_retry_policy`` for about ``retry_for`` seconds of retrying.

    kombu retries a publish ``max_retries`` times, pausing ``interval_start`` seconds and then
    ``interval_step`` more each time, up to ``interval_max``; it has no time bound of its own,
    so the count is what makes the pauses add up to the window.

    >>> publish_retry_policy(10)["max_retries"]
    13
    >>> publish_retry_policy(0)["max_retries"]
    0
    """
    policy = {"interval_start": 0.0, "interval_step": 0.2, "interval_max": 1.0}
    retries, waited, pause = 0, 0.0, policy["interval_start"]
    while waited < retry_for:
        retries += 1
        waited += pause
        pause = min(pause + policy["interval_step"], policy["interval_max"])
    return {"max_retries": retries, **policy}


def create_app() -> Celery:
    """Build the Celery app from the current settings."""
    settings = get_settings()
    celery_app = Celery("jobq", include=["workers.jobs"])
    socket_options = {
        # Every Redis call has a bound: a half-open connection must not hang a worker forever.
        "socket_timeout": 30,
        "socket_connect_timeout": 5,
        "socket_keepalive": True,
        "retry_on_timeout": True,
    }
    celery_app.conf.update(
        **redis_conf(settings.redis_url),
        # JSON only: pickle in a queue is remote code execution.
        task_serializer="json",
        result_serializer="json",
        event_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_queues=[Queue(profile.queue) for profile in POOLS.values()],
        task_default_queue="cpu",
        task_create_missing_queues=False,
        # Acknowledge after the job finished, so a dead worker's jobs go back to the queue.
        task_acks_late=True,
        task_acks_on_failure=True,
        # False would requeue a timed-out job forever (shared notes §1).
        task_acks_on_timeout=True,
        # A job whose process died is re-sent as a retry, bounded by max_retries, instead of
        # being requeued forever (Celery 5.7); rejecting is the fallback if the retry can't be sent.
        task_retry_on_worker_lost=True,
        task_reject_on_worker_lost=True,
        # The bound itself is each job's max_retries (workers/retrying.py): Celery has no
        # app-wide max-retries setting.
        # No STARTED result write: it cost a GET plus a SET/PUBLISH round trip per job (~15% of a
        # no-op's worker CPU, docs/benchmarks.md); the task-started event still tells Flower.
        task_track_started=False,
        worker_prefetch_multiplier=settings.prefetch_multiplier,
        # ETA/countdown jobs wait in worker memory and raise the prefetch window; cap them.
        worker_eta_task_limit=1000,
        # Events for Flower and `jobq status`; sent events so jobs show up as soon as queued.
        worker_send_task_events=True,
        task_send_sent_event=True,
        result_expires=settings.result_expires,
        result_failure_expires=settings.result_failure_expires,
        broker_connection_retry_on_startup=True,
        # A publish (apply_async: pipelines, retries, a next step) rides out a Redis restart or
        # failover for JOBQ_PRODUCER_RETRY_FOR seconds instead of Celery's ~0.6 s.
        task_publish_retry=True,
        task_publish_retry_policy=publish_retry_policy(settings.producer_retry_for),
        worker_cancel_long_running_tasks_on_connection_loss=True,
        broker_transport_options={
            # The lease (workers/lease.py): short visibility timeout, renewed by live workers;
            # every worker sweeps for expired leases every restore_interval seconds (throttle 1
            # makes the interval the only control), and a sweeper that dies mid-sweep blocks
            # the others for at most unacked_mutex_expire seconds (kombu's default is 300).
            "visibility_timeout": settings.visibility_timeout,
            "unacked_restore_interval": settings.restore_interval,
            "unacked_restore_throttle": 1,
            "unacked_mutex_expire": 15,
            # Under gevent every greenlet acks on the consumer channel's own Redis pool (kombu's
            # default: 10 connections, non-blocking); 100 greenlets acking at once overflowed it
            # (MaxConnectionsError, the ack lost, the job run again after its lease). Issue 3.
            "max_connections": settings.io_concurrency + 20,
            **socket_options,
        },
        result_backend_transport_options={**socket_options},
        redis_socket_timeout=30,
        redis_socket_connect_timeout=5,
        broker_pool_limit=10,
        worker_hijack_root_logger=True,
        # Undecodable, foreign, unknown and invalid messages are dead-lettered, not dropped;
        # a queue item that is not even a kombu envelope must not stop the worker.
        worker_consumer="workers.rejection:RejectingConsumer",
        # kombu's Redis transport with batched fetch and acks, and refusing non-envelopes
        # (workers/transport.py).
        broker_transport="workers.transport:RedisTransport",
    )
    return celery_app


app = create_app()


@celeryd_init.connect
def _share_result_backend_in_workers(conf: Any = None, **_: Any) -> None:
    # Celery keeps one result backend per thread; under gevent that means one per greenlet, so
    # every job would open a fresh Redis connection. Workers only store results (they never wait
    # on them), so one shared, thread-safe client is right there. Producers keep the default:
    # a shared result consumer races between threads waiting on results (celery #4670).
    (conf or app.conf).result_backend_thread_safe = True


# Imported for their side effects (signal handlers, worker bootsteps):
# - deadletter, lease: dead letters for terminal failures, lease renewal (issue 4);
# - fastpath, groupcommit: per-job work batched or skipped by default: events, results,
#   records and acks batched on gevent, no per-job INFO lines (issue 6; docs/benchmarks.md);
# - timings: job timing records.
import workers.deadletter  # noqa: E402
import workers.fastpath  # noqa: E402
import workers.groupcommit  # noqa: E402
import workers.lease  # noqa: E402
import workers.timings  # noqa: E402, F401
