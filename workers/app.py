"""The composition root: the one place where jobq's Celery app is built and its features wired.

``create_app(settings)`` builds the Celery app from :class:`~workers.settings.Settings` and
installs each feature: every module of ``workers/features/`` has an ``install(app, settings)``
that connects its signal handlers (with a ``dispatch_uid``, so installing twice is harmless) and
adds its bootsteps. No feature module imports this one; reading :data:`ALWAYS` and
:data:`FAST_PATHS` below tells you everything a worker does besides running jobs.

Both pools and every producer share this app, so they agree on serialization, queues and
delivery semantics. Each Celery setting below says why it differs from Celery's default.

``celery -A workers.app worker|inspect|flower`` works as usual: ``workers.app:app`` is built on
first use, from the environment.

Example::

    $ celery -A workers.app inspect ping
    >>> app = create_app(Settings(fast_paths=False))   # stock Celery/kombu code paths
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from celery import Celery
from celery.signals import celeryd_init
from kombu import Queue

from workers.broker import compat
from workers.catalog import job_modules, load_jobs_or_exit
from workers.features import (
    cancellation,
    connection_loss,
    dead_letters,
    delivery_limit,
    group_commit,
    job_logs,
    job_records,
    leases,
    library_patches,
    log_context,
    pause,
    publish_gate,
    publish_headers,
    rate_limits,
    task_events,
    time_limits,
)
from workers.pools import POOLS
from workers.registry import route_job
from workers.settings import Settings, get_settings
from workers.stores.client import tls_options

Install = Callable[[Celery, Settings], None]

# Features every worker has: each keeps a guarantee or tells the operator something.
ALWAYS: tuple[Install, ...] = (
    compat.install,  # refuse to start on Celery/kombu versions lacking what jobq uses
    leases.install,  # renew held leases; restore expired ones (a dead worker's jobs)
    cancellation.install,  # cancelled jobs never start; running ones stop (`jobq cancel`)
    connection_loss.install,  # running jobs outlive a lost Redis connection
    delivery_limit.install,  # a job that keeps killing its process is refused
    dead_letters.install,  # every terminal failure is kept, classified
    rate_limits.install,  # the mover: parked jobs back on their queue when due
    pause.install,  # `jobq pause`: control commands, start-up check, reconciler
    time_limits.install,  # gevent: the watchdog for jobs that block the hub
    publish_headers.install,  # sent time and correlation id on every publish
    publish_gate.install,  # a running job's publishes wait for room in their queue
    job_records.install,  # one record per job, with its statistics
    log_context.install,  # job context on every log line, text or JSON
    job_logs.install,  # no per-job INFO lines unless JOBQ_LOG_EACH_JOB
)
# Speed-ups on private Celery/kombu internals (JOBQ_FAST_PATHS, on by default). Off, workers
# run on stock code paths with every guarantee above kept.
FAST_PATHS: tuple[Install, ...] = (
    group_commit.install,  # gevent: results, records and acks in one round trip per batch
    task_events.install,  # gevent: task events in batches
    library_patches.install,  # cheap repr of results; redis-py's version looked up once
)

SOCKET_OPTIONS = {
    # Every Redis call has a bound: a half-open connection must not hang a worker forever.
    "socket_timeout": 30,
    "socket_connect_timeout": 5,
    "socket_keepalive": True,
    "retry_on_timeout": True,
}


def redis_conf(url: str, *, fast_paths: bool = True) -> dict[str, Any]:
    """The Celery settings that follow from the Redis URL: broker, result backend, TLS.

    >>> redis_conf("redis://127.0.0.1:6379/0", fast_paths=False)["result_backend"]
    'redis://127.0.0.1:6379/0'
    """
    # rediss:// means TLS with a verified certificate (kombu alone would not verify it),
    # optionally against a private CA and with a client certificate (workers/stores/client.py).
    tls = tls_options(url)
    return {
        "broker_url": url,
        # Fast path: Celery's Redis backend, each result written in one atomic round trip
        # instead of a GET then SET+PUBLISH (workers/broker/result_backend.py): result writes
        # fell from 17% to 12% of a gevent worker's samples on no-op jobs (docs/benchmarks.md).
        "result_backend": (
            f"workers.broker.result_backend:AtomicRedisBackend+{url}" if fast_paths else url
        ),
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
    retries, waited, pause_s = 0, 0.0, policy["interval_start"]
    while waited < retry_for:
        retries += 1
        waited += pause_s
        pause_s = min(pause_s + policy["interval_step"], policy["interval_max"])
    return {"max_retries": retries, **policy}


def transport(settings: Settings, *, stock: bool = False) -> str | None:
    """The kombu transport: batched (fast paths), guarded (stock fetch and acks), or kombu's own.

    ``stock=True`` is for processes that consume no jobs (Flower): kombu picks by the URL scheme.
    """
    if stock:
        return None
    if settings.fast_paths:
        # kombu's Redis transport with batched fetch and acks (workers/broker/batched.py).
        return "workers.broker.batched:RedisTransport"
    # kombu's fetch and acks; only non-envelope items are refused (workers/broker/envelopes.py).
    return "workers.broker.envelopes:GuardedRedisTransport"


class JobqApp(Celery):
    """jobq's Celery app: a copy sent to a spawned process is rebuilt by the composition root.

    billiard starts prefork children with ``spawn`` on macOS, and on Linux with
    ``--pool-start-method spawn``: such a child unpickles the app it was given. Celery's own
    pickling rebuilds a bare app from its configuration, without jobq's features (no records,
    no dead letters, no delivery-limit bookkeeping in the child); this one rebuilds it with
    :func:`get_app`, from the same environment the parent read.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        return (get_app, ())


def create_app(settings: Settings | None = None, *, stock_transport: bool = False) -> Celery:
    """Build the Celery app from ``settings`` and install every feature.

    ``settings`` decide the app itself: broker, result backend, transport, Celery options, and
    which features are installed. The features read the process's own settings
    (:func:`~workers.settings.get_settings`) while they run, so a worker's settings are its
    environment; pass settings that differ from the environment only to build a second app
    for a process that runs no jobs (Flower, a test).

    ``stock_transport=True`` builds the same app on kombu's plain Redis transport, for processes
    that consume no jobs (Flower picks its broker client by the transport's URL scheme).
    """
    settings = settings or get_settings()
    # The jobs declare themselves (shared_task) before the app finalizes. A job module that
    # fails to import, or a name declared twice, raises; the celery command exits 2 saying so.
    load_jobs_or_exit(settings)
    app = JobqApp("jobq", include=job_modules(settings))
    app.conf.update(
        **redis_conf(settings.redis_url, fast_paths=settings.fast_paths),
        # JSON only: pickle in a queue is remote code execution.
        task_serializer="json",
        result_serializer="json",
        event_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_queues=[Queue(profile.queue) for profile in POOLS.values()],
        task_default_queue="cpu",
        task_create_missing_queues=False,
        # Each job to its pool's queue, by name, whoever sends it (workers/registry).
        task_routes=(route_job,),
        # Acknowledge after the job finished, so a dead worker's jobs go back to the queue.
        task_acks_late=True,
        task_acks_on_failure=True,
        # False would requeue a job that hit its hard time limit, to hit it again, forever.
        task_acks_on_timeout=True,
        # A job whose process died is re-sent as a retry, bounded by max_retries, instead of
        # being requeued forever (Celery 5.7); rejecting is the fallback if the retry can't be sent.
        task_retry_on_worker_lost=True,
        task_reject_on_worker_lost=True,
        # The bound itself is each job's max_retries (workers/registry/retrying.py): Celery has
        # no app-wide max-retries setting.
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
        # A Redis restart or blip must not kill running jobs: they go on, are acknowledged
        # after the reconnect (workers/features/connection_loss.py), and the lease covers a
        # real partition. Celery's True cancelled them all, each kill counting toward the
        # job's delivery limit.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        broker_transport_options={
            # The lease (workers/features/leases.py): short visibility timeout, renewed by live
            # workers; every worker sweeps for expired leases every restore_interval seconds
            # (throttle 1 makes the interval the only control), and a sweeper that dies
            # mid-sweep blocks the others for at most unacked_mutex_expire seconds (kombu's
            # default is 300).
            "visibility_timeout": settings.visibility_timeout,
            "unacked_restore_interval": settings.restore_interval,
            "unacked_restore_throttle": 1,
            "unacked_mutex_expire": 15,
            # Under gevent every greenlet acks on the consumer channel's own Redis pool (kombu's
            # default: 10 connections, non-blocking); 100 greenlets acking at once overflowed it
            # (MaxConnectionsError, the ack lost, the job run again after its lease).
            "max_connections": settings.io_concurrency + 20,
            **SOCKET_OPTIONS,
        },
        result_backend_transport_options={**SOCKET_OPTIONS},
        redis_socket_timeout=30,
        redis_socket_connect_timeout=5,
        broker_pool_limit=10,
        worker_hijack_root_logger=True,
        # Undecodable, foreign, unknown and invalid messages are dead-lettered, not dropped.
        worker_consumer="workers.broker.consumer:RejectingConsumer",
        broker_transport=transport(settings, stock=stock_transport),
        # Read by workers/broker/compat.py when a worker starts.
        jobq_fast_paths=settings.fast_paths,
    )
    for install in ALWAYS + (FAST_PATHS if settings.fast_paths else ()):
        install(app, settings)
    celeryd_init.connect(_share_result_backend_in_workers, weak=False, dispatch_uid="jobq.app")
    return app


def _share_result_backend_in_workers(conf: Any = None, **_: Any) -> None:
    # Celery keeps one result backend per thread; under gevent that means one per greenlet, so
    # every job would open a fresh Redis connection. Workers only store results (they never wait
    # on them), so one shared, thread-safe client is right there. Producers keep the default:
    # a shared result consumer races between threads waiting on results
    # (https://github.com/celery/celery/issues/4670).
    if conf is not None:
        conf.result_backend_thread_safe = True


@lru_cache(maxsize=1)
def get_app() -> Celery:
    """The process-wide app, built from the environment's settings on first use."""
    return create_app(get_settings())


def __getattr__(name: str) -> Any:
    # ``workers.app:app`` (``celery -A workers.app``, ``from workers.app import app``) is built
    # on first use rather than at import, so importing jobq reads no settings and opens nothing.
    if name == "app":
        return get_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
