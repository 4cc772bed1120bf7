"""``jobq exporter``: Prometheus metrics that Flower's ``/metrics`` does not have.

Flower exports task events, runtimes and worker status, but nothing about the queues themselves
and no wait time. This endpoint adds, read from Redis on every scrape:

======================================  =========  =============================================
metric                                  type       labels / meaning
======================================  =========  =============================================
``jobq_queue_depth``                    gauge      ``queue``: messages waiting
``jobq_queue_oldest_job_age_seconds``   gauge      ``queue``: age of the oldest waiting job
``jobq_queue_unacked``                  gauge      ``queue``: taken by a worker, not acked yet
``jobq_job_wait_seconds``               histogram  ``job, pool``: sent → started
``jobq_job_run_seconds``                histogram  ``job, pool``: started → finished
``jobq_jobs_finished_total``            counter    ``job, pool, state``: attempts that ended
``jobq_dead_letters``                   gauge      entries in the dead-letter store
``jobq_queue_parked``                   gauge      ``queue``: rate-limited jobs parked in Redis
``jobq_queue_delayed``                  gauge      ``queue``: delayed submits waiting in Redis
``jobq_rate_limit_waits_total``         counter    ``job``: runs that waited for their turn
``jobq_rate_limit_wait_seconds_total``  counter    ``job``: seconds spent waiting for turns
``jobq_rate_limit_parked_total``        counter    ``job``: jobs parked until a far-off turn
``jobq_redis_up``                       gauge      1 if Redis answered this scrape
======================================  =========  =============================================

Why the histograms are right across scrapes: workers add every finished job to cumulative
bucket counters in Redis (:mod:`workers.stores.job_stats`), in the same pipeline as the job
record. The
exporter keeps no state; it reads those counters, so any number of workers and exporter
replicas agree, an exporter restart loses nothing, and Prometheus' ``rate()`` and
``histogram_quantile()`` work as intended. (Consuming Celery events instead would lose
everything that happened while the exporter was down, and double-count with two replicas.)

Example::

    $ jobq exporter --port 9808
    $ curl -s 127.0.0.1:9808/metrics | grep jobq_queue_depth
    jobq_queue_depth{queue="io"} 12.0
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import click
import redis
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ops.sampler import (
    dead_letter_count,
    default_queues,
    oldest_sent_at,
    parked_by_queue,
    rate_limit_stats,
    unacked_by_queue,
)
from producers.queues import queue_depths
from workers.stores.client import get_redis
from workers.stores.job_stats import read_histograms, read_totals
from workers.stores.scheduled import delayed_by_queue

DEFAULT_PORT = 9808


class JobqCollector(Collector):
    """Reads jobq's state from Redis at scrape time (no state of its own)."""

    def __init__(self, client: redis.Redis | None = None) -> None:
        self.client = client

    def collect(self) -> Iterator[Metric]:
        client = self.client or get_redis()
        up = GaugeMetricFamily("jobq_redis_up", "1 if Redis answered this scrape, else 0.")
        try:
            metrics = list(self._from_redis(client))
        except redis.RedisError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from metrics

    def _from_redis(self, client: redis.Redis) -> Iterator[Metric]:
        queues = default_queues()
        now = time.time()
        depth = GaugeMetricFamily(
            "jobq_queue_depth", "Messages waiting in the queue.", labels=["queue"]
        )
        oldest = GaugeMetricFamily(
            "jobq_queue_oldest_job_age_seconds",
            "Age of the oldest waiting job (0 when the queue is empty).",
            labels=["queue"],
        )
        unacked = GaugeMetricFamily(
            "jobq_queue_unacked",
            "Messages delivered to a worker and not acknowledged yet.",
            labels=["queue"],
        )
        parked = GaugeMetricFamily(
            "jobq_queue_parked",
            "Rate-limited jobs parked in Redis until their turn (not in the queue list).",
            labels=["queue"],
        )
        delayed = GaugeMetricFamily(
            "jobq_queue_delayed",
            "Jobs submitted with delay/at, waiting in Redis until due (not in the queue list).",
            labels=["queue"],
        )
        depths = queue_depths(client, queues)
        delayed_now = delayed_by_queue(client, queues)
        held = unacked_by_queue(client, queues)
        parked_now = parked_by_queue(client, queues)
        for queue in queues:
            depth.add_metric([queue], depths[queue])
            parked.add_metric([queue], parked_now[queue])
            delayed.add_metric([queue], delayed_now[queue])
            sent = oldest_sent_at(client, queue)
            oldest.add_metric([queue], max(0.0, now - sent) if sent is not None else 0.0)
            unacked.add_metric([queue], held[queue])
        yield from (depth, oldest, unacked, parked, delayed)

        for measure, meaning in (("wait", "sent to started"), ("run", "started to finished")):
            family = HistogramMetricFamily(
                f"jobq_job_{measure}_seconds",
                f"Job {measure} time ({meaning}), per job and pool.",
                labels=["job", "pool"],
            )
            for histogram in read_histograms(client, measure):
                family.add_metric(
                    [histogram.job, histogram.pool],
                    buckets=list(histogram.buckets.items()),
                    sum_value=histogram.sum,
                )
            yield family

        finished = CounterMetricFamily(
            "jobq_jobs_finished",
            "Job attempts that ended, by final state (RETRY: the attempt asked for a retry).",
            labels=["job", "pool", "state"],
        )
        for (job, pool, state), count in sorted(read_totals(client).items()):
            finished.add_metric([job, pool, state], count)
        yield finished

        dead = GaugeMetricFamily("jobq_dead_letters", "Entries in the dead-letter store.")
        dead.add_metric([], dead_letter_count(client))
        yield dead
        waits = CounterMetricFamily(
            "jobq_rate_limit_waits",
            "Runs that waited in place for their rate-limit turn.",
            labels=["job"],
        )
        waited = CounterMetricFamily(
            "jobq_rate_limit_wait_seconds",
            "Seconds spent waiting in place for rate-limit turns.",
            labels=["job"],
        )
        parked_total = CounterMetricFamily(
            "jobq_rate_limit_parked",
            "Jobs parked in Redis because their turn was far off.",
            labels=["job"],
        )
        for job, stats in sorted(rate_limit_stats(client).items()):
            waits.add_metric([job], stats.get("waits", 0))
            waited.add_metric([job], stats.get("wait_seconds", 0.0))
            parked_total.add_metric([job], stats.get("parked", 0))
        yield from (waits, waited, parked_total)


def build_registry(client: redis.Redis | None = None) -> CollectorRegistry:
    """A registry holding only jobq's collector (no process metrics: Flower has the workers)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobqCollector(client))
    return registry


@click.command()
@click.option("--address", default="127.0.0.1", show_default=True, help="0.0.0.0 in a container.")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int)
def exporter_command(address: str, port: int) -> None:
    """Serve jobq's Prometheus metrics (queue depth, oldest job, wait/run histograms …)."""
    server, _ = start_http_server(port, addr=address, registry=build_registry())
    click.echo(f"jobq exporter on http://{address}:{server.server_port}/metrics", err=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()
