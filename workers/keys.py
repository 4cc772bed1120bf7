"""Every name jobq shares through Redis: key prefixes, message headers and task attributes.

Producers, workers and the operator commands read and write the same keys; naming them in one
module means a reader finds every key jobq owns in one place, and a producer never imports a
private name from a worker module. Keys that kombu owns (the queue lists, ``unacked``,
``unacked_index``) are kombu's and are not repeated here.

Example::

    >>> from workers import keys
    >>> keys.RECORD_PREFIX + "6f1c…"
    'jobq:job:6f1c…'
"""

from __future__ import annotations

# --- message headers (set by producers and workers on every publish) ----------------------
# When the message was published (epoch seconds): wait time = started - sent.
SENT_HEADER = "jobq_sent_at"
# The correlation id given at submit; every job a job publishes inherits it.
CORRELATION_HEADER = "jobq_correlation_id"
# On the placeholder of a queue item the transport refused: why (workers/broker/envelopes.py).
REFUSED_HEADER = "jobq_refused"

# --- job records and statistics (workers write, `jobq show/top/status/exporter` read) ------
RECORD_PREFIX = "jobq:job:"  # hash per job id: name, queue, state, times, worker
HIST_PREFIX = "jobq:stats:hist:"  # + "wait" | "run": histogram fields "job|pool|le"
TOTAL_KEY = "jobq:stats:total"  # hash: finished jobs per "job|pool|state"
RECENT_PREFIX = "jobq:stats:recent:"  # + queue: list of "finished wait run" strings

# --- reliability ---------------------------------------------------------------------------
# + job id: a running job's latest progress, JSON {done, total, note, updated}; kept as long as
# results (workers/stores/progress.py), readable whether or not the job stores a result.
PROGRESS_PREFIX = "jobq:progress:"
STARTS_PREFIX = "jobq:starts:"  # + job id: repeated starts without finishing (delivery limit)
# The dead-letter store's hash is JOBQ_DEAD_LETTER_KEY (default "jobq:dead"), its index that
# key + DEAD_INDEX_SUFFIX.
DEAD_INDEX_SUFFIX = ":index"
IDEMPOTENCY_PREFIX = "jobq:idem:"  # + job + ":" + key: the job id submitted with that key
# + job id: a cancel, JSON {"who", "when"}, kept as long as results (workers/stores/cancels.py).
CANCEL_PREFIX = "jobq:cancel:"

# A list nothing writes: a worker waiting out a full Redis BLPOPs it as a server-side pause
# (workers/broker/take.py).
TAKE_PAUSE_KEY = "jobq:take:pause"

# --- back pressure and rate limits ---------------------------------------------------------
GATE_PREFIX = "jobq:gate:"  # + queue + ":closed" | ":held" | ":leases": the admission gate
LIMITS_KEY = "jobq:limits"  # hash: job name -> run-time rate ("5/s") or "off"
SCHEDULE_PREFIX = "jobq:rate:"  # + job[:key]: the next free turn (µs, Redis clock)
RATE_STATS_KEY = "jobq:ratelimit:stats"  # hash: "<job>:waits" | ":wait_seconds" | ":parked"
DELAYED_PREFIX = "jobq:delayed:"  # + queue: zset of parked messages scored by their turn
# On a parked message: which turn it was parked for. It makes each parked copy of a job distinct
# (a mover removing the copy it moved never removes the job parked again since); it is never
# trusted: the turn itself is claimed from TURN_PREFIX.
PARKED_HEADER = "jobq_parked_for"
# + job id: the turn (µs) a parked job reserved; taken (once) when it comes back. In Redis, not in
# the message, so a message from any client cannot claim a turn it never reserved.
TURN_PREFIX = "jobq:turn:"
# + queue: zset of delayed submits (`submit(..., delay=)`), each member the exact message a worker
# will receive, scored by its due time (epoch s, Redis clock). Apart from DELAYED_PREFIX so the
# admission gate does not count them before they are due (workers/stores/scheduled.py).
SCHEDULED_PREFIX = "jobq:scheduled:"
PAUSE_PREFIX = "jobq:paused:"  # + pool: set while the pool is paused (`jobq pause`)

# --- data jobs keep for each other, and measurement -----------------------------------------
BODY_PREFIX = "jobq:body:"  # + job id: a page fetch_url kept for the next pipeline step
PROBE_PREFIX = "jobq:probe:"  # + name + ":current" | ":peak" | ":visits" (tests, benchmarks)
SAMPLES_KEY = "jobq:samples"  # the sampler's time series (`jobq sample`, `jobq report`)

# --- task attributes a job declaration sets (read by the worker and `jobq limits`) ---------
# The pool queue of the job. Not Celery's own ``queue`` attribute: Celery 5.7 deprecates it
# (routing is task_routes' job; jobq's router is workers.registry.route_job).
QUEUE_ATTRIBUTE = "jobq_queue"
RATE_ATTRIBUTE = "jobq_rate"
RATE_KEY_ATTRIBUTE = "jobq_rate_key"

# kombu.transport.redis: Channel.sep and PRIORITY_STEPS. A kombu queue on Redis is one list per
# priority step (``io``, ``io\x06\x163`` …).
PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)


def queue_lists(queue: str) -> list[str]:
    """The Redis list names holding ``queue``'s messages, highest priority first."""
    return [queue if step == 0 else f"{queue}{PRIORITY_SEPARATOR}{step}" for step in PRIORITY_STEPS]
