"""The admission gate's check: how many jobs fit under a queue's high-water mark.

One Lua script (``admit.lua``) sums the queue's backlog (its priority lists, the jobs the rate
limiter parked for it, the room reserved by publishers that have not published yet), grants
what fits, reserves it under a lease, and keeps the hysteresis flag. Producers wait or fail on
it (producers/backpressure.py); workers wait on it before publishing a job
(workers/features/publish_gate.py), so every path into a queue passes the same check.

Example::

    gate = AdmissionGate.for_queue("cpu")
    admission = gate.try_admit(1, token=uuid.uuid4().hex)
    if admission.granted:
        ...  # publish, then
        gate.release(admission)
"""

from __future__ import annotations

import uuid
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Self

import redis

from workers.keys import DELAYED_PREFIX, GATE_PREFIX, queue_lists
from workers.settings import Settings, get_settings
from workers.stores.client import get_redis
from workers.stores.scripts import LuaScript

# A publisher that dies between reserving room and publishing frees it after this long.
RESERVATION_LEASE_MS = 30_000

ADMIT = LuaScript(__package__, "admit.lua")
# True while a publisher publishes jobs it has already passed through the gate
# (producers/backpressure.py ``admitted``); the workers' gate then does not check them again.
ADMITTED: ContextVar[bool] = ContextVar("jobq_admitted", default=False)


def gate_keys(queue: str, flag: str = "closed") -> list[str]:
    """What the gate counts besides ``queue``'s lists: parked jobs, its flag, reservations.

    In ``admit.lua``'s order: the parked (rate-limited) zset, the hysteresis flag, the
    reservations hash and its lease zset. The delayed-jobs mover counts the same backlog.
    """
    return [
        DELAYED_PREFIX + queue,
        f"{GATE_PREFIX}{queue}:{flag}",
        f"{GATE_PREFIX}{queue}:held",
        f"{GATE_PREFIX}{queue}:leases",
    ]


@dataclass(frozen=True)
class WaterMarks:
    """High/low-water marks of one queue; ``high == 0`` means the gate is off."""

    high: int
    low: int

    def __post_init__(self) -> None:
        if self.high < 0 or self.low < 0:
            raise ValueError("water marks must not be negative")
        if self.high and self.low >= self.high:
            raise ValueError(f"low-water mark {self.low} must be below high-water {self.high}")

    @property
    def enabled(self) -> bool:
        return self.high > 0


def marks_for(queue: str, settings: Settings | None = None) -> WaterMarks:
    """The configured marks of ``queue`` (``JOBQ_<QUEUE>_HIGH_WATER`` / ``_LOW_WATER``)."""
    settings = settings or get_settings()
    high = getattr(settings, f"{queue}_high_water", 0)
    low = getattr(settings, f"{queue}_low_water", 0)
    return WaterMarks(high=high, low=min(low, max(high - 1, 0)))


@dataclass(frozen=True)
class Admission:
    """The answer of one gate check: how many jobs may be published now."""

    granted: int
    backlog: int
    closed: bool
    token: str | None = None


class AdmissionGate:
    """The admission gate of one queue (see the module docstring)."""

    def __init__(
        self,
        queue: str,
        marks: WaterMarks,
        client: redis.Redis | None = None,
        *,
        flag: str = "closed",
    ) -> None:
        self.queue = queue
        self.marks = marks
        self.client = client or get_redis()
        # ``flag`` names the hysteresis flag: a gate with other marks on the same queue (the
        # workers' ceiling for re-published jobs) must not share the producers' flag.
        self._keys = [*queue_lists(queue), *gate_keys(queue, flag)]

    @classmethod
    def for_queue(cls, queue: str) -> Self:
        return cls(queue, marks_for(queue))

    def try_admit(self, wanted: int, token: str | None = None) -> Admission:
        """Reserve room for up to ``wanted`` jobs; release it with :meth:`release`.

        ``token`` names the reservation; pass the same one when retrying a check whose reply
        was lost, so the retry replaces the reservation instead of adding a second one.
        """
        if not self.marks.enabled:
            return Admission(granted=wanted, backlog=-1, closed=False)
        if token is None:
            token = reservation_token(wanted)
        args = [self.marks.high, self.marks.low, wanted, token, self.lease_ms()]
        # A full Redis raises here; the caller turns that into RedisFull with its counts.
        granted, backlog, closed = ADMIT(self.client, keys=self._keys, args=args)
        return Admission(int(granted), int(backlog), bool(closed), token if granted else None)

    def release(self, admission: Admission) -> None:
        """The reserved jobs are published (or given up): stop counting the reservation."""
        if not admission.token:
            return
        pipe = self.client.pipeline(transaction=False)
        pipe.hdel(self._keys[-2], admission.token)
        pipe.zrem(self._keys[-1], admission.token)
        pipe.execute()

    @staticmethod
    def lease_ms() -> int:
        """How long a reservation lives: past a publish retried through a whole Redis outage
        (producers/outage.py), since one that expired mid-retry would let its batch past the mark.
        """
        return RESERVATION_LEASE_MS + int(2000 * get_settings().producer_retry_for)

    def is_closed(self) -> bool:
        """True while producers wait for the backlog to drain to the low-water mark."""
        return bool(self.client.exists(self._keys[-3]))


def reservation_token(wanted: int) -> str:
    """A new reservation's name; "" (no reservation) for a single job.

    A single job is not worth two more round trips (reserve, release): unreserved, racing
    producers can overshoot the mark by at most one job each.
    """
    return uuid.uuid4().hex if wanted > 1 else ""
