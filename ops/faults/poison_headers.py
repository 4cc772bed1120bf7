"""Fault scenario: a message with a bad header field, in the middle of a batch of good jobs.

A client that is not jobq (or is broken) sends a valid job whose ``jobq_sent_at`` header is
``"x"``. Before jobq checked header fields, the gevent worker ran it, its record write raised,
and the group commit dropped every result, record and ack of that batch: the batch's jobs ran
again after their lease, the bad one at every lease, for ever. What is promised now: the bad
message is refused once (dead-lettered as malformed, never run) and every good job runs exactly
once, on either of two live I/O workers.

There is no switch to turn the check off, so this scenario has no negative control; the tests
(tests/test_poison_headers.py) show the failure on the code before the check.

Example::

    $ jobq faults --only poison-header
"""

from __future__ import annotations

import time

from ops.faults.lab import Lab
from ops.faults.messages import envelope, task_body, task_headers, with_field
from ops.faults.scenarios import JOB, FaultResult, _tag


def poison_header_in_batch(lab: Lab, n: int = 50, lease_s: float = 6.0) -> FaultResult:
    """``n`` good I/O jobs and one with ``jobq_sent_at="x"`` among them, two I/O workers."""
    tag = _tag()
    messages, ids = [], []
    for _ in range(n + 1):
        headers = task_headers(JOB["io"])
        headers["jobq_sent_at"] = time.time()
        messages.append(envelope(task_body({"tag": tag, "ms": 50}), queue="io", headers=headers))
        ids.append(headers["id"])
    # The bad one in the middle: the workers fetch it, and finish it, with good ones around it.
    middle = n // 2
    messages[middle] = with_field(messages[middle], "jobq_sent_at", "x")
    poison = ids.pop(middle)
    # Queued before the workers start, so both fetch full batches from the first moment.
    client = lab.client()
    client.lpush("io", *messages)
    workers = lab.workers_together(
        *({"pool": "io", "concurrency": 25, "name": f"peer{i}"} for i in range(2))
    )
    started = time.monotonic()
    lab.wait_for_effects(tag, ids, timeout=60)
    # Everything acknowledged or refused means nothing can come back. Without the fix it never
    # is: give it three leases, in which the bad message would have run three more times.
    deadline = time.monotonic() + 3 * lease_s
    while (lab.unacked() or lab.queued("io")) and time.monotonic() < deadline:
        time.sleep(0.1)
    settled = time.monotonic() - started  # both workers up -> every message acked or refused
    tally = lab.tally(tag, ids)
    refused = [d for d in lab.dead_letters() if d.get("id") == poison]
    poison_runs = lab.starts(tag).get(poison, 0)
    tally.dead_lettered = len(refused)
    tally.notes.update(
        poison_runs=poison_runs,
        poison_reason=refused[0]["reason"] if refused else "-",
        unacked_after=lab.unacked(),
        workers_alive=sum(w.alive() for w in workers),
    )
    return FaultResult(
        f'one job with header jobq_sent_at="x" among {n} good ones, 2 live I/O workers',
        tally,
        settled,
        "bad one refused once (malformed, never run); good ones: 0 lost, 0 run twice",
        tally.lost == 0
        and tally.duplicate_starts == 0
        and tally.duplicate_effects == 0
        and poison_runs == 0
        and len(refused) == 1
        and refused[0]["reason"] == "malformed"
        and lab.unacked() == 0
        and all(w.alive() for w in workers),
    )
