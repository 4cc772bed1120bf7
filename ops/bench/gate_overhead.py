"""Gate overhead: submit throughput (jobs/s) with the admission gate on versus off, same run.

One producer process, one private redis-server, no workers (the queue is emptied between
rounds). "On" is a high-water mark that is never reached, so every batch pays the full check
(one ``EVALSHA`` that sums the priority lists, plus one release); "off" is ``high_water=0``.
Rounds alternate on/off so drift on a shared machine hits both alike; the table reports the
median and min–max of the rounds for ``submit_many`` (gate per batch of 1 000) and for
``submit`` in a loop (gate per job, the worst case).

Writes ``docs/backpressure-gate-overhead.json``.

Example::

    $ .venv/bin/python -m ops.bench.gate_overhead          # about 1 minute
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

from ops.bench.backpressure_harness import save_json
from ops.bench.harness import private_redis


def set_gate(on: bool) -> None:
    from workers.settings import get_settings

    os.environ["JOBQ_IO_HIGH_WATER"] = "1000000000" if on else "0"
    os.environ["JOBQ_IO_LOW_WATER"] = "1" if on else "0"
    get_settings.cache_clear()


def round_many(jobs: int) -> float:
    from producers import submit_many

    started = time.perf_counter()
    submit_many("io_wait", [{"ms": 1}] * jobs)
    return jobs / (time.perf_counter() - started)


def round_single(jobs: int) -> float:
    from producers import submit

    started = time.perf_counter()
    for _ in range(jobs):
        submit("io_wait", ms=1)
    return jobs / (time.perf_counter() - started)


def measure(rounds: int, many: int, single: int) -> dict[str, Any]:
    from workers.stores.client import get_redis

    samples: dict[str, list[float]] = {}
    for index in range(rounds):
        for on in (index % 2 == 0, index % 2 == 1):  # alternate which goes first
            set_gate(on)
            for name, function, count in (
                ("submit_many", round_many, many),
                ("submit", round_single, single),
            ):
                rate = function(count)
                samples.setdefault(f"{name} gate {'on' if on else 'off'}", []).append(rate)
                get_redis().delete("io")
    table = {}
    for key, values in samples.items():
        table[key] = {
            "median": round(statistics.median(values)),
            "min": round(min(values)),
            "max": round(max(values)),
        }
    for name in ("submit_many", "submit"):
        on, off = table[f"{name} gate on"]["median"], table[f"{name} gate off"]["median"]
        table[f"{name} cost"] = {"ratio_on_over_off": round(on / off, 3)}
    return {
        "rounds": rounds,
        "many_jobs": many,
        "single_jobs": single,
        "table": table,
        "check_ms": check_cost(),
    }


def check_cost(calls: int = 500) -> dict[str, float]:
    """The gate's own cost, alone: milliseconds per check (+ release) of a batch and of one job.

    The throughput rounds above are noisy on a shared machine; this isolates what the gate adds.
    """
    from producers.backpressure import AdmissionGate, WaterMarks

    gate = AdmissionGate("io", WaterMarks(high=10**9, low=1))
    costs = {}
    for label, wanted in (("batch_of_1000", 1000), ("single_job", 1)):
        started = time.perf_counter()
        for _ in range(calls):
            gate.release(gate.try_admit(wanted))
        costs[label] = round((time.perf_counter() - started) / calls * 1000, 3)
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--many", type=int, default=20_000, help="jobs per submit_many round")
    parser.add_argument("--single", type=int, default=2_000, help="jobs per submit-loop round")
    args = parser.parse_args()
    with private_redis("gate-overhead"):
        result = measure(args.rounds, args.many, args.single)
    save_json("backpressure-gate-overhead", result)
    print("| call | gate off (jobs/s) | gate on (jobs/s) | on/off |\n|---|---|---|---|")
    for name in ("submit_many", "submit"):
        off, on = result["table"][f"{name} gate off"], result["table"][f"{name} gate on"]
        ratio = result["table"][f"{name} cost"]["ratio_on_over_off"]
        print(
            f"| {name} | {off['median']:,} ({off['min']:,}–{off['max']:,}) | "
            f"{on['median']:,} ({on['min']:,}–{on['max']:,}) | {ratio:.2f} |"
        )
    print(f"gate check alone, ms per call: {result['check_ms']}")


if __name__ == "__main__":
    main()
