"""Every jobq setting, read from the environment in this one place.

Workers, producers, the CLI and the local stack all read their configuration through
:func:`get_settings`. Names are the environment variables: ``REDIS_URL`` plus ``JOBQ_*``. Each
field carries its own documentation (``description``, and its ``section`` in
``json_schema_extra``); ``python -m ops.settings_docs`` turns them into docs/configuration.md and
the settings blocks of docker-compose.yml and .env.example, and a test fails when those are stale.

Example::

    $ JOBQ_IO_CONCURRENCY=300 jobq worker io
    >>> get_settings().io_concurrency
    300
"""

from __future__ import annotations

import re
from enum import StrEnum
from functools import lru_cache
from typing import Annotated
from urllib.parse import parse_qs, urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


class Section(StrEnum):
    """The sections of the configuration reference, in the order it lists them.

    Each field names its own in ``json_schema_extra={"section": ...}``, so a new setting cannot
    be left out of the generated documentation.
    """

    REDIS = "Redis"
    IO_POOL = "I/O pool (gevent)"
    CPU_POOL = "CPU pool (prefork)"
    BOTH_POOLS = "Both pools"
    RELIABILITY = "Reliability"
    BACK_PRESSURE = "Back pressure and rate limits"
    SUBMITTING = "Submitting"
    RESULTS = "Results"
    LOGGING = "Logging"
    JOBS = "Jobs and testing"


class Settings(BaseSettings):
    """Typed settings; each field documents itself (see docs/configuration.md)."""

    model_config = SettingsConfigDict(env_prefix="JOBQ_", extra="ignore", frozen=True)

    # --- Redis ------------------------------------------------------------------------------
    # No JOBQ_ prefix: REDIS_URL is the name every Redis tool and hosting platform already uses.
    redis_url: str = Field(
        default=DEFAULT_REDIS_URL,
        validation_alias="REDIS_URL",
        description=(
            "Where the broker and the result backend live: `redis://[:password@]host:port/db`, "
            "or `rediss://…` for TLS (use it whenever Redis is on another host; the server's "
            "certificate is then always verified). No `JOBQ_` prefix. `ssl_*` query "
            "parameters are refused, so a URL cannot switch verification off. "
            "`jobq up` starts a private Redis unless this is set; docker compose builds it from "
            "`REDIS_PASSWORD` and its own `redis` service."
        ),
        json_schema_extra={"section": Section.REDIS},
    )
    redis_ca_file: str = Field(
        default="",
        description=(
            "With a `rediss://` `REDIS_URL`: path of the PEM bundle of the CA that signed Redis's "
            "certificate, for a private CA. Empty: the system's CAs. Verification stays on "
            "either way."
        ),
        json_schema_extra={"section": Section.REDIS},
    )
    redis_cert_file: str = Field(
        default="",
        description=(
            "With a `rediss://` `REDIS_URL`: path of the PEM client certificate jobq presents, "
            "for a Redis that asks for one (`tls-auth-clients`, on by default in redis-server). "
            "Set it together with `JOBQ_REDIS_KEY_FILE`, or neither."
        ),
        json_schema_extra={"section": Section.REDIS},
    )
    redis_key_file: str = Field(
        default="",
        description=(
            "Path of the PEM private key of `JOBQ_REDIS_CERT_FILE`. Both or neither: one "
            "without the other stops jobq at start."
        ),
        json_schema_extra={"section": Section.REDIS},
    )

    # --- I/O pool (gevent): many cheap greenlets in one process ----------------------------
    io_concurrency: int = Field(
        default=100,
        ge=1,
        le=5000,
        description=(
            "Greenlets per I/O worker process: how many I/O jobs one process runs at once. "
            "Waiting on sockets is cheap, so raise it for jobs that mostly wait (slow sites, "
            "long polls). It does not add CPU: one gevent process uses at most one core, so "
            "for more throughput add processes (`JOBQ_IO_PROCESSES`, compose's "
            "`WORKER_IO_REPLICAS`). Also sizes fetch_url's connection pool per host and the "
            "worker's Redis connection pool."
        ),
        json_schema_extra={"section": Section.IO_POOL},
    )
    io_processes: int = Field(
        default=0,
        ge=0,
        le=256,
        description=(
            "How many `jobq worker io` processes `jobq up` starts (its default `--scale io=auto`). "
            "0: one per CPU this host lets jobq use, cgroup quota included, because one gevent "
            "process spends about 1 ms of CPU per job on messaging and results and so fills "
            "its core long before its greenlets run out. `jobq up` accepts at most 64. Not "
            "used by docker compose: set `WORKER_IO_REPLICAS` there."
        ),
        json_schema_extra={"section": Section.IO_POOL},
    )
    io_soft_time_limit: float = Field(
        default=50.0,
        gt=0,
        description=(
            "Seconds an I/O job may run before `SoftTimeLimitExceeded` is raised inside it, so "
            "it can clean up (gevent has no soft limit of its own; jobq adds one). It arrives "
            "when the job next waits on I/O. Ignored unless below `JOBQ_IO_TIME_LIMIT`; a job's "
            "own `soft_time_limit` takes precedence."
        ),
        json_schema_extra={"section": Section.IO_POOL},
    )
    io_time_limit: float = Field(
        default=60.0,
        gt=0,
        description=(
            "Hard limit of an I/O job, in seconds: past it the job fails with "
            "`TimeLimitExceeded`. A watchdog also stops jobs that compute without ever "
            "yielding, within about a second of the limit. Keep compose's "
            "`WORKER_IO_STOP_GRACE_PERIOD` above it, so a stop lets running jobs finish."
        ),
        json_schema_extra={"section": Section.IO_POOL},
    )

    # --- CPU pool (prefork): one process per job running --------------------------------------
    cpu_concurrency: str = Field(
        default="auto",
        pattern=r"^(auto|[1-9][0-9]*)$",
        description=(
            "Processes per CPU worker (`jobq worker cpu`): `auto` is one per CPU this process "
            "may use, cgroup quota included (a container limited to 2 CPUs runs 2), or a whole "
            "number. More processes than cores only adds switching for jobs that compute."
        ),
        json_schema_extra={"section": Section.CPU_POOL},
    )
    cpu_soft_time_limit: float = Field(
        default=240.0,
        gt=0,
        description=(
            "Seconds a CPU job may run before `SoftTimeLimitExceeded` is raised inside it, so it "
            "can clean up. Keep it below `JOBQ_CPU_TIME_LIMIT`."
        ),
        json_schema_extra={"section": Section.CPU_POOL},
    )
    cpu_time_limit: float = Field(
        default=300.0,
        gt=0,
        description=(
            "Hard limit of a CPU job, in seconds: past it the process running the job is killed "
            "and replaced, and the job fails with `TimeLimitExceeded`. Keep compose's "
            "`WORKER_CPU_STOP_GRACE_PERIOD` above it, so a stop lets running jobs finish."
        ),
        json_schema_extra={"section": Section.CPU_POOL},
    )
    cpu_max_tasks_per_child: int = Field(
        default=500,
        ge=1,
        description=(
            "A CPU worker process is replaced by a fresh one after this many jobs, which "
            "returns memory that jobs leaked or fragmented. Lower it if memory grows over time."
        ),
        json_schema_extra={"section": Section.CPU_POOL},
    )
    cpu_max_memory_per_child: int = Field(
        default=512_000,
        ge=1024,
        description=(
            "Resident memory, in KiB (Celery's unit), above which a CPU worker process is "
            "replaced after its current job; 512000 is 500 MiB. In a container, keep the "
            "memory limit above the processes times this."
        ),
        json_schema_extra={"section": Section.CPU_POOL},
    )

    # --- Both pools -----------------------------------------------------------------------------
    prefetch_multiplier: int = Field(
        default=1,
        ge=1,
        le=64,
        description=(
            "Messages a worker reserves per unit of concurrency (Celery's "
            "`worker_prefetch_multiplier`). 1: a worker takes no more jobs than it can run at "
            "once. Above 1, prefork workers hold jobs that wait behind their running ones while "
            "other workers sit idle, and gevent workers gain nothing (they stop fetching while "
            "every greenlet is busy) but larger backlogs of rate-limited and delayed jobs. "
            "Leave it at 1 unless measurements say otherwise."
        ),
        json_schema_extra={"section": Section.BOTH_POOLS},
    )
    fast_paths: bool = Field(
        default=True,
        description=(
            "Use jobq's speed-ups that rely on private Celery/kombu internals (batched fetch and "
            "acks, group commit, one-round-trip result writes, buffered task events on gevent, "
            "fast repr of results, pipelined bulk publishing). Off: jobq runs on stock "
            "Celery/kombu code paths, slower, with every guarantee kept (leases, dead letters, "
            "rejection of bad messages, rate limits, the admission gate); use it when upgrading "
            "Celery/kombu past the tested versions."
        ),
        json_schema_extra={"section": Section.BOTH_POOLS},
    )

    # --- Reliability: leases, retries, dead letters, Redis outages ----------------------------
    # The lease is kombu's visibility_timeout kept short and renewed by live workers
    # (workers/features/leases.py): one fixed long timeout would leave a killed worker's jobs
    # invisible for as long, a short one alone would hand long jobs out twice.
    visibility_timeout: int = Field(
        default=30,
        ge=3,
        description=(
            "The lease, in seconds: a delivered job that no live worker has renewed for this "
            "long goes back to its queue (kombu's `visibility_timeout`). Live workers renew the "
            "jobs they hold every `JOBQ_LEASE_RENEW_INTERVAL`, so long jobs are never handed out "
            "twice, and a killed worker's jobs return within this plus `JOBQ_RESTORE_INTERVAL` "
            "(about 35 s by default). Lower: faster recovery, but a worker cut off from Redis (or "
            "whose Python is stopped, as by one long C call holding the GIL) for longer loses its "
            "jobs to another worker, which runs them again."
        ),
        json_schema_extra={"section": Section.RELIABILITY},
    )
    lease_renew_interval: float = Field(
        default=10.0,
        gt=0,
        description=(
            "Seconds between two lease renewals by a live worker. Keep it well below "
            "`JOBQ_VISIBILITY_TIMEOUT` (a third lets one renewal fail without losing the lease); "
            "at or above it, workers log a warning and jobs may run twice."
        ),
        json_schema_extra={"section": Section.RELIABILITY},
    )
    restore_interval: int = Field(
        default=5,
        ge=1,
        description=(
            "Seconds between two sweeps of each worker for expired leases, whose jobs it puts "
            "back in their queues (kombu's `unacked_restore_interval`). Lower: a killed worker's "
            "jobs return sooner, for more Redis work per sweep."
        ),
        json_schema_extra={"section": Section.RELIABILITY},
    )
    max_retries_on_worker_lost: int = Field(
        default=3,
        ge=0,
        description=(
            "A job whose worker process dies while running it (a crash, `os._exit`, the OOM "
            "killer) runs again at most this many times, then fails and is dead-lettered, so a "
            "job that kills its process cannot loop forever. Also the default `max_retries` of "
            "jobs without `retry_on=`."
        ),
        json_schema_extra={"section": Section.RELIABILITY},
    )
    transient_max_retries: int = Field(
        default=5,
        ge=0,
        description=(
            "How many times a job retries the errors it declares transient (`retry_on=`) before "
            "it fails and is dead-lettered. Each pause is a random time (full jitter) up to "
            "1 s, 2 s, 4 s, …, capped at `JOBQ_RETRY_BACKOFF_MAX`."
        ),
        json_schema_extra={"section": Section.RELIABILITY},
    )
    retry_backoff_max: int = Field(
        default=60,
        ge=1,
        description="Longest pause, in seconds, between two retries of a transient error.",
        json_schema_extra={"section": Section.RELIABILITY},
    )
    dead_letter_key: str = Field(
        default="jobq:dead",
        description=(
            "Redis key of the dead-letter store (`jobq dead list|show|retry|purge`) of jobs that "
            "failed for good and messages that were refused: a hash at this key and an index by "
            "time at `KEY:index`. Change it only to keep two deployments on one Redis apart; "
            "every worker, producer and `jobq` command of a deployment must use the same value."
        ),
        json_schema_extra={"section": Section.RELIABILITY},
    )
    dead_letter_max: int = Field(
        default=100_000,
        ge=0,
        description=(
            "Dead letters kept at most (they never expire; `jobq dead purge` removes them). Past "
            "it the oldest are dropped, with a warning in the worker's log. 0: no cap, which "
            "lets a flood of poison or foreign messages fill Redis, which then refuses every "
            "write, new jobs included."
        ),
        json_schema_extra={"section": Section.RELIABILITY},
    )
    producer_retry_for: float = Field(
        default=10.0,
        ge=0,
        le=300,
        description=(
            "Seconds a producer keeps retrying, with growing pauses, while Redis is unreachable "
            "(a restart, a failover), then fails (the CLI: `cannot reach Redis`, exit 1). 0: "
            "fail at once. Workers' own publishes (a pipeline's next step, a retry) ride out the "
            "same window. Refusals (a wrong password, an untrusted certificate) are never "
            "retried. Raise it if your Redis takes longer to restart (a large append-only file)."
        ),
        json_schema_extra={"section": Section.RELIABILITY},
    )

    # --- Back pressure and rate limits (producers/backpressure.py, workers/stores/rate_limits.py)
    # A Redis list is unbounded (kombu ignores x-max-length on Redis), so without the gate
    # producers could fill Redis until it refuses every write.
    io_high_water: int = Field(
        default=100_000,
        ge=0,
        description=(
            "Backlog of the `io` queue (queued jobs of every priority plus jobs the rate limiter "
            "parked) at which producers stop: they wait or fail, see `JOBQ_ON_FULL`. 0 turns "
            "the gate off for this queue. Redis holds about 1.5 KB per queued job, so keep the "
            "marks of both queues well within Redis's `maxmemory`."
        ),
        json_schema_extra={"section": Section.BACK_PRESSURE},
    )
    io_low_water: int = Field(
        default=80_000,
        ge=0,
        description=(
            "Waiting producers resume once the `io` backlog has drained to this, so they do not "
            "wake up for every job a worker takes. A value at or above the high-water mark "
            "counts as one below it."
        ),
        json_schema_extra={"section": Section.BACK_PRESSURE},
    )
    cpu_high_water: int = Field(
        default=100_000,
        ge=0,
        description="`JOBQ_IO_HIGH_WATER` for the `cpu` queue.",
        json_schema_extra={"section": Section.BACK_PRESSURE},
    )
    cpu_low_water: int = Field(
        default=80_000,
        ge=0,
        description="`JOBQ_IO_LOW_WATER` for the `cpu` queue.",
        json_schema_extra={"section": Section.BACK_PRESSURE},
    )
    on_full: str = Field(
        default="wait",
        pattern=r"^(wait|fail)$",
        description=(
            "What a submit does at the high-water mark unless the caller chooses (`on_full=`, "
            "`jobq submit --on-full`): `wait` blocks until the backlog drains to the low-water "
            "mark, for at most `JOBQ_GATE_TIMEOUT`; `fail` raises `QueueFull` at once (the CLI "
            "exits 3). Either way, what was submitted before stays submitted."
        ),
        json_schema_extra={"section": Section.BACK_PRESSURE},
    )
    gate_timeout: float = Field(
        default=300.0,
        ge=0,
        description=(
            "Seconds a waiting producer waits for the backlog to drain before it raises "
            "`QueueFull` (the CLI exits 3). 0: fail as soon as it would wait."
        ),
        json_schema_extra={"section": Section.BACK_PRESSURE},
    )
    worker_gate_wait: float = Field(
        default=300.0,
        ge=0,
        description=(
            "Seconds a running job waits for room in a queue before it publishes a job there "
            "(a pipeline's next step, a retry, a job it starts) while that queue is at its "
            "high-water mark (a retry: at twice the mark). After that it publishes anyway, "
            "with a warning: bounded, so two pools waiting on each other's full queues cannot "
            "hold each other forever. The job's slot stays busy while it waits."
        ),
        json_schema_extra={"section": Section.BACK_PRESSURE},
    )
    io_rate_max_park: float = Field(
        default=1.0,
        ge=0,
        description=(
            "Rate-limited I/O jobs: one whose turn is at most this many seconds away waits for "
            "it in place (only its greenlet sleeps); one further away is parked in Redis until "
            "its turn, holding no worker slot and no prefetch."
        ),
        json_schema_extra={"section": Section.BACK_PRESSURE},
    )
    cpu_rate_max_park: float = Field(
        default=0.1,
        ge=0,
        description=(
            "`JOBQ_IO_RATE_MAX_PARK` for CPU jobs. A CPU job waiting in place holds a whole "
            "process, so keep it short."
        ),
        json_schema_extra={"section": Section.BACK_PRESSURE},
    )

    # --- Submitting -------------------------------------------------------------------------------
    idempotency_window: int = Field(
        default=86_400,
        ge=1,
        description=(
            "Seconds during which a submit with a key already used for the same job "
            "(`submit(..., key=K)`, `jobq submit --key K`) returns the existing job instead of "
            "enqueueing it again."
        ),
        json_schema_extra={"section": Section.SUBMITTING},
    )
    max_argument_bytes: int = Field(
        default=1_048_576,
        ge=1024,
        description=(
            "Largest job arguments accepted at submit, in bytes of JSON; larger ones are refused "
            "(`PayloadTooLarge`) before anything is enqueued. Every byte sits in Redis and "
            "travels each hop: pass a reference (a URL, a file name) rather than raising it."
        ),
        json_schema_extra={"section": Section.SUBMITTING},
    )

    # --- Results ----------------------------------------------------------------------------------
    result_expires: int = Field(
        default=86_400,
        ge=60,
        description=(
            "Seconds a finished job's result and its record (`jobq show`) stay in Redis. Longer "
            "keeps more history, at the cost of Redis memory."
        ),
        json_schema_extra={"section": Section.RESULTS},
    )
    result_failure_expires: int = Field(
        default=604_800,
        ge=60,
        description=(
            "Seconds a failed job's result (its error) stays in Redis: longer than successes, "
            "so failures can still be inspected days later."
        ),
        json_schema_extra={"section": Section.RESULTS},
    )

    # --- Logging ----------------------------------------------------------------------------------
    log_level: str = Field(
        default="INFO",
        pattern=r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$",
        description="Workers' log level (uppercase); `jobq worker --loglevel` overrides it.",
        json_schema_extra={"section": Section.LOGGING},
    )
    log_format: str = Field(
        default="text",
        pattern=r"^(text|json)$",
        description=(
            "`text`: Celery's usual lines, with `[job=… id=… queue=… pool=… pid=… on=… cid=…]` "
            "appended inside a job; `json`: one JSON object per line (time, level, logger, "
            "message, the job context, the exception), for log shippers. "
            "`jobq worker --log-format` overrides it."
        ),
        json_schema_extra={"section": Section.LOGGING},
    )
    log_each_job: bool = Field(
        default=False,
        description=(
            "Log Celery's two INFO lines per job (`Task … received`, `… succeeded in …`). Off by "
            "default: they cost a visible share of a busy worker's CPU. Turn it on to follow "
            "single jobs while debugging."
        ),
        json_schema_extra={"section": Section.LOGGING},
    )

    # --- Shipped jobs and testing -----------------------------------------------------------
    # fetch_url takes these from its own argument defaults today (workers/jobs/http.py).
    jobs: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Your own job modules, comma-separated dotted names (`myapp.jobs,billing.jobs`): "
            "the modules that hold your `@io_job`/`@cpu_job`/`@pipeline` functions. Workers, "
            "`jobq up`, producers and `jobq jobs` import them next to jobq's shipped jobs; "
            "`jobq worker … --jobs` and `jobq up --jobs` set it too. A module that fails to "
            "import, or a job name declared twice, stops the worker at start with exit 2."
        ),
        json_schema_extra={"section": Section.JOBS},
    )
    fetch_max_bytes: int = Field(
        default=5 * 1024 * 1024,
        ge=1024,
        description=(
            "The largest response body `fetch_url` accepts, in bytes, when the job does not pass "
            "`max_bytes=`; read by the worker that runs the job. A larger body fails the job "
            "with `ResponseTooLarge`. At most `JOBQ_FETCH_MAX_BYTES_LIMIT`."
        ),
        json_schema_extra={"section": Section.JOBS},
    )
    fetch_max_bytes_limit: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        le=512 * 1024 * 1024,
        description=(
            "The largest `max_bytes=` a `fetch_url` job may ask for: a larger one is refused at "
            "submit and by the worker (each against its own setting). A worker holds each body "
            "in memory, and a pipeline keeps it in Redis for `JOBQ_BODY_TTL`. At most 512 MiB."
        ),
        json_schema_extra={"section": Section.JOBS},
    )
    body_ttl: int = Field(
        default=600,
        ge=1,
        le=86_400,
        description=(
            "Seconds a pipeline's page (`fetch_url keep_body=true`, `jobq:body:<job id>`) stays "
            "in Redis for the next step. Long enough for that step to wait through a backlog "
            "on its queue; each kept page is at most `JOBQ_FETCH_MAX_BYTES`."
        ),
        json_schema_extra={"section": Section.JOBS},
    )
    fetch_timeout: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description=(
            "Seconds `fetch_url` allows a whole request (connect, redirects, body) when the job "
            "does not pass `timeout=`; read by the worker that runs the job. At most 300, as "
            "for `timeout=`."
        ),
        json_schema_extra={"section": Section.JOBS},
    )
    fault_jobs: bool = Field(
        default=False,
        description=(
            "Register the fault-injection jobs (crash a process, write a file, …) for the test "
            "suite and `jobq faults`. Never in production: anyone who can enqueue could then "
            "kill workers or write files as the workers' user. docker compose never passes it."
        ),
        json_schema_extra={"section": Section.JOBS},
    )

    @field_validator("jobs", mode="before")
    @classmethod
    def _job_modules_by_comma(cls, value: object) -> object:
        # An environment variable is one string; "a.jobs, b.jobs" and a trailing comma are fine.
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",")]
        if isinstance(value, (list, tuple)):
            names = [str(part).strip() for part in value if str(part).strip()]
            for name in names:
                if not _MODULE_NAME.fullmatch(name):
                    raise ValueError(f"{name!r} is not a dotted module name (like myapp.jobs)")
            return list(dict.fromkeys(names))
        return value

    @field_validator("log_format", mode="before")
    @classmethod
    def _log_format_in_any_case(cls, value: object) -> object:
        # "JSON", " json " and "" (the default) were accepted when the variable was read by hand.
        if isinstance(value, str):
            return value.strip().lower() or "text"
        return value

    @model_validator(mode="after")
    def _fetch_default_within_its_limit(self) -> Settings:
        if self.fetch_max_bytes > self.fetch_max_bytes_limit:
            raise ValueError(
                f"JOBQ_FETCH_MAX_BYTES ({self.fetch_max_bytes}) is above "
                f"JOBQ_FETCH_MAX_BYTES_LIMIT ({self.fetch_max_bytes_limit})"
            )
        return self

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
    """Hide the password of a ``redis://user:password@host`` URL, and a ``?password=`` one.

    >>> redact_url("redis://:s3cret@127.0.0.1:6379/0")
    'redis://:***@127.0.0.1:6379/0'
    >>> redact_url("redis://127.0.0.1:6379/0?password=s3cret&db=1")
    'redis://127.0.0.1:6379/0?password=***&db=1'
    """
    # redis-py reads the password from the query string too (any case of "password").
    url = _QUERY_PASSWORD.sub(r"\1***", url)
    scheme, sep, rest = url.partition("://")
    address, query_sep, query = rest.partition("?")
    if not sep or "@" not in address:
        return url
    credentials, _, host = address.rpartition("@")
    user, colon, _ = credentials.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{host}{query_sep}{query}"


_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
