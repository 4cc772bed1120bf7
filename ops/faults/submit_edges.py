"""Fault scenarios at the producer's edge: a lost reply, and pipelines against a full queue.

* :func:`lost_reply_submit`: Redis applies a ``jobq submit --key``'s enqueue but the reply
  never arrives (a loopback proxy, ops/reply_drop_proxy.py, cuts the connection right after);
  the user repeats the submit with the same key. Counted: jobs lost, jobs that ran twice. The
  negative control is the same lost reply without a key, where a repeat is a new job.
* :func:`pipelines_against_a_full_cpu_queue`: pipelines admitted while ``cpu`` had room, then
  ``cpu`` filled to its mark before their fetches ran: the next steps wait at the gate; the
  peak ``cpu`` depth is reported, and every pipeline finishes once a CPU worker drains it.

Example::

    $ jobq faults --only lost-reply
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid

from ops.faults.lab import Lab
from ops.faults.scenarios import JOB, FaultResult, _tag
from ops.local_site import serve_local_site
from ops.processes import jobq_argv
from ops.reply_drop_proxy import ReplyDropProxy
from producers.queues import queue_depths

# Only an enqueued message carries this header, so only the enqueue loses its reply.
ENQUEUE_MARKER = b"kwargsrepr"


def _submit(lab: Lab, job: str, tag: str, *extra: str, url: str | None = None) -> str:
    """``jobq submit`` one job; its printed id ("" when it failed)."""
    env = {**lab.env, **({"REDIS_URL": url} if url else {})}
    done = subprocess.run(
        jobq_argv("submit", job, f"tag={tag}", "ms=50", *extra),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout.strip() if done.returncode == 0 else ""


def lost_reply_submit(lab: Lab, per_pool: int = 3) -> FaultResult:
    """Each submit's enqueue applied, its reply lost; repeated with the same key."""
    lab.workers_together({"pool": "io", "concurrency": 4}, {"pool": "cpu", "concurrency": 2})
    tag, control_tag = _tag(), _tag()
    ids: list[str] = []
    repeat_s: list[float] = []  # how long the user's repeat takes to return the job's id
    with ReplyDropProxy(lab.redis.port, ENQUEUE_MARKER, drops=2 * per_pool + 2) as proxy:
        through = lab.redis.url.replace(f":{lab.redis.port}/", f":{proxy.port}/")
        for pool in ("io", "cpu"):
            for _ in range(per_pool):
                key = f"lost-reply-{uuid.uuid4().hex[:8]}"
                _submit(lab, JOB[pool], tag, "--key", key, url=through)
                started = time.monotonic()
                ids.append(_submit(lab, JOB[pool], tag, "--key", key))  # the user's repeat
                repeat_s.append(time.monotonic() - started)
        # Negative control: the same lost reply without a key; the repeat is a second job.
        for pool in ("io", "cpu"):
            _submit(lab, JOB[pool], control_tag, url=through)
            _submit(lab, JOB[pool], control_tag)
        dropped = proxy.dropped
    tally = lab.wait_for_effects(tag, [i for i in ids if i], timeout=60)
    lab.wait_for(
        lambda: lab.queued("io") + lab.queued("cpu") + lab.unacked() == 0,
        timeout=60,
        what="queues drained",
    )
    # A duplicate has an id of its own: count every job that started under the tag.
    started_jobs = len(lab.starts(tag))
    tally.submitted = len(ids)
    tally.lost += ids.count("")
    tally.duplicate_starts += max(0, started_jobs - len(ids))
    tally.notes.update(
        replies_lost=dropped,
        jobs_started=started_jobs,
        control_without_key_jobs=len(lab.starts(control_tag)),
    )
    return FaultResult(
        f"a submit whose reply is lost, repeated with the same key ({per_pool} per pool)",
        tally,
        max(repeat_s),
        "0 lost, 0 duplicates: the repeat returns the first job's id",
        tally.lost == 0 and tally.duplicate_starts == 0 and dropped == 2 * per_pool + 2,
    )


def pipelines_against_a_full_cpu_queue(lab: Lab, n: int = 20, high: int = 10) -> FaultResult:
    """``n`` pipelines whose ``cpu`` step meets a ``cpu`` queue at its mark of ``high``."""
    marks = {"JOBQ_CPU_HIGH_WATER": str(high), "JOBQ_CPU_LOW_WATER": str(high // 2)}
    env = {**lab.env, **marks}
    client = lab.client()
    with serve_local_site() as site:
        lines = "".join(json.dumps({"url": site.url("/page/1")}) + "\n" for _ in range(n))
        # Admitted while `cpu` is empty; no I/O worker yet, so no fetch has run.
        done = subprocess.run(
            jobq_argv("submit", "fetch_and_analyze", "--file", "-", "--on-full", "fail"),
            input=lines, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        ids = done.stdout.split()
        tag = _tag()
        filler = lab.submit_many(JOB["cpu"], [{"tag": tag, "ms": 0}] * high)  # `cpu` at its mark
        io = lab.worker("io", concurrency=n, env=marks)
        peak = 0

        def waiting() -> bool:
            nonlocal peak
            peak = max(peak, queue_depths(client, ["cpu"])["cpu"])
            return peak > high or io.log_tail(500_000).count("waits for room") >= len(ids)

        lab.wait_for(waiting, timeout=60, what="the fetches waiting or publishing")
        drained_from = time.monotonic()
        lab.worker("cpu", concurrency=2, env=marks)
        results = lab.producer.backend
        lab.wait_for(
            lambda: all(results.get_status(i) in ("SUCCESS", "FAILURE") for i in ids) or None,
            timeout=120,
            what="every pipeline finished",
        )
        recovery = time.monotonic() - drained_from
    tally = lab.wait_for_effects(tag, filler, timeout=60)
    finished = sum(1 for i in ids if results.get_status(i) == "SUCCESS")
    tally.submitted = len(ids) + len(filler)
    tally.lost += len(ids) - finished
    tally.notes.update(
        pipelines=len(ids), peak_cpu_backlog=peak, cpu_high_water=high, refused=n - len(ids)
    )
    return FaultResult(
        f"{len(ids)} pipelines meet a full cpu queue (high-water {high})",
        tally,
        recovery,
        "the cpu queue stays at its mark; every pipeline finishes once it drains",
        peak <= high and tally.lost == 0 and tally.duplicate_starts == 0,
    )
