"""Every jobq setting, read from the environment in this one place.

Workers, producers, the CLI and the local stack all read their configuration through
:func:`get_settings`, so one table in the README documents everything. Names are the
environment variables: ``REDIS_URL`` plus ``JOBQ_*``.

Example::

    $ JOBQ_IO_CONCURRENCY=300 jobq worker io
    >>> get_settings().io_concurrency
    300
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import parse_qs, urlsplit

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


class Settings(BaseSettings):
    """Typed settings; each field is documented in the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="JOBQ_", extra="ignore", frozen=True)

    # Where the broker and the result backend live. ``REDIS_URL`` without prefix, because that
    # is the name every Redis tool and hosting platform already uses.
    redis_url: str = Field(default=DEFAULT_REDIS_URL, validation_alias="REDIS_URL")
    # TLS (rediss:// URLs only). The server's certificate is always verified: against the
    # system's CAs, or against this CA bundle when Redis has a certificate of a private CA.
    # A client certificate and its key for Redis's tls-auth-clients (on by default in
    # redis-server): both or neither. PEM file paths.
    redis_ca_file: str = ""
    redis_cert_file: str = ""
    redis_key_file: str = ""

    # I/O pool (gevent): many cheap greenlets in one process.
    io_concurrency: int = Field(default=100, ge=1, le=5000)
    io_time_limit: float = Field(default=60.0, gt=0)
    # --- I/O processes (issue 6): how many `jobq worker io` processes `jobq up`/compose run ---
    # One gevent process is CPU-bound (messaging, events, results: ~1 ms of CPU per job) long
    # before its greenlets run out, so the I/O side runs one process per core by default.
    # 0 = one per CPU this host lets us use (cgroup quota included); see pools.io_process_count.
    io_processes: int = Field(default=0, ge=0, le=256)
    # Celery's "Task … received" / "… succeeded in …" INFO lines, one pair per job: off by
    # default, they cost a visible share of a busy worker's CPU (workers/fastpath.py).
    log_each_job: bool = False

    # CPU pool (prefork): "auto" sizes it from the CPUs this process may use (cgroup quota too).
    cpu_concurrency: str = Field(default="auto", pattern=r"^(auto|[1-9][0-9]*)$")
    cpu_soft_time_limit: float = Field(default=240.0, gt=0)
    cpu_time_limit: float = Field(default=300.0, gt=0)
    cpu_max_tasks_per_child: int = Field(default=500, ge=1)
    # KiB, checked after each job (Celery's unit). 512 MiB by default.
    cpu_max_memory_per_child: int = Field(default=512_000, ge=1024)

    # Both pools. Multiplier 1: a worker reserves no more than it can run (shared notes §2).
    prefetch_multiplier: int = Field(default=1, ge=1, le=64)
    # A job whose worker process dies is retried this many times, then fails (not requeued forever).
    max_retries_on_worker_lost: int = Field(default=3, ge=0)

    # Results and job records expire; failures are kept longer so they can be inspected.
    result_expires: int = Field(default=86_400, ge=60)
    result_failure_expires: int = Field(default=604_800, ge=60)
    # --- Reliability (issue 4): leases, dead letters, retries, submit limits ---------------
    # The lease: a delivered job that no live worker has renewed for this many seconds goes
    # back to the queue (kombu's visibility_timeout). Live workers renew the jobs they hold
    # every lease_renew_interval seconds (workers/lease.py), so long jobs are never handed out
    # twice, while a killed worker's jobs return within visibility_timeout + restore_interval.
    visibility_timeout: int = Field(default=30, ge=3)
    lease_renew_interval: float = Field(default=10.0, gt=0)
    # How often each worker looks for expired leases (kombu's unacked_restore_interval).
    restore_interval: int = Field(default=5, ge=1)
    # Where terminal failures and rejected messages are kept (a hash plus an index by time).
    dead_letter_key: str = "jobq:dead"
    # At most this many dead letters are kept; past it the oldest go (0 = no cap). A flood of
    # poison or foreign messages must not fill Redis, which refuses writes when full.
    dead_letter_max: int = Field(default=100_000, ge=0)
    # Declared transient errors (retry_on=...) retry up to this many times, with exponential
    # backoff capped at retry_backoff_max seconds, plus full jitter.
    transient_max_retries: int = Field(default=5, ge=0)
    retry_backoff_max: int = Field(default=60, ge=1)
    # submit(..., key=...): the same key within this many seconds returns the existing job.
    idempotency_window: int = Field(default=86_400, ge=1)
    # While Redis is unreachable (a restart) producers retry each step with growing pauses for
    # this many seconds, then fail (the CLI: "cannot reach Redis", exit 1). 0 = fail at once.
    # Workers' own publishes (next pipeline steps, retries) use the same window.
    producer_retry_for: float = Field(default=10.0, ge=0, le=300)
    # Arguments larger than this (JSON-encoded bytes) are refused at submit.
    max_argument_bytes: int = Field(default=1_048_576, ge=1024)
    # gevent has no soft time limit of its own; jobq adds one (workers/timelimits.py).
    io_soft_time_limit: float = Field(default=50.0, gt=0)
    # --- end of reliability settings ----------------------------------------------------

    # fetch_url: refuse bodies larger than this, so one huge page cannot exhaust a worker.
    fetch_max_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    fetch_timeout: float = Field(default=10.0, gt=0)

    # Register the fault-injection jobs (workers/jobs/faulty.py: crash a process, write a file…)
    # for the test suite and `jobq faults` only. Never in production: anyone who can enqueue
    # could otherwise kill workers or write files as the worker's user.
    fault_jobs: bool = False

    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")
    log_format: str = Field(default="text", pattern=r"^(text|json)$")
    # Speed-ups on private Celery/kombu internals; off = stock code paths, every guarantee kept.
    fast_paths: bool = True

    # --- Back pressure and rate limits (issue 3): producers/backpressure.py, ratelimit.py ---
    # Admission gate per queue: over the high-water mark producers wait (or fail with
    # QueueFull) until the backlog (all priority lists + rate-delayed jobs) drains to the
    # low-water mark. 0 disables the gate for that queue. ~1.5 KB of Redis per queued job.
    io_high_water: int = Field(default=100_000, ge=0)
    io_low_water: int = Field(default=80_000, ge=0)
    cpu_high_water: int = Field(default=100_000, ge=0)
    cpu_low_water: int = Field(default=80_000, ge=0)
    # What submit does at the mark unless the caller says: "wait" (block) or "fail" (QueueFull).
    on_full: str = Field(default="wait", pattern=r"^(wait|fail)$")
    # How long a waiting producer waits for the backlog to drain before raising QueueFull.
    gate_timeout: float = Field(default=300.0, ge=0)
    # Rate limits: a job whose token is at most this many seconds away waits for it in place
    # (gevent: only its greenlet parks); later ones are parked in Redis until their turn, so
    # they hold no worker slot and no prefetch. Prefork parks a whole process: keep it short.
    io_rate_max_park: float = Field(default=1.0, ge=0)
    cpu_rate_max_park: float = Field(default=0.1, ge=0)
    # --- end of back pressure and rate limit settings -------------------------------------

    @model_validator(mode="after")
    def _client_certificate_needs_its_key(self) -> Settings:
        if bool(self.redis_cert_file) != bool(self.redis_key_file):
            raise ValueError(
                "JOBQ_REDIS_CERT_FILE and JOBQ_REDIS_KEY_FILE go together: set both or neither"
            )
        return self

    @model_validator(mode="after")
    def _tls_is_always_verified(self) -> Settings:
        # redis-py and Celery let ssl_* query parameters of the URL override jobq's TLS options,
        # so "?ssl_cert_reqs=none" would silently turn verification off.
        query = parse_qs(urlsplit(self.redis_url).query)
        overrides = sorted(name for name in query if name.startswith("ssl_"))
        if overrides:
            raise ValueError(
                f"REDIS_URL must not set {', '.join(overrides)}: jobq always verifies Redis's "
                "certificate; use JOBQ_REDIS_CA_FILE / JOBQ_REDIS_CERT_FILE / JOBQ_REDIS_KEY_FILE"
            )
        return self

    def redacted_redis_url(self) -> str:
        """The Redis URL with its password replaced, safe to print or log."""
        return redact_url(self.redis_url)


def redact_url(url: str) -> str:
    """Hide the password of a ``redis://user:password@host`` URL.

    >>> redact_url("redis://:s3cret@127.0.0.1:6379/0")
    'redis://:***@127.0.0.1:6379/0'
    """
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user, colon, _ = credentials.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{host}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
