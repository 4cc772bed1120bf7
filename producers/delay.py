"""Run later: checking ``delay=``/``at=`` and parsing ``--delay 90s``/``--at 2026-12-01T10:00Z``.

``submit(name, delay=90, ...)`` or ``submit(name, at=datetime(..., tzinfo=UTC), ...)`` stores
the job in Redis until it is due (workers/broker/schedule.py); any live worker of its queue puts
it on the queue within a second of its time (workers/stores/scheduled.py). Rules, the same for
the API and the command line:

* ``delay`` is seconds (int or float, or a ``timedelta``), ``>= 0``; negative is an error;
* ``at`` must be timezone-aware: a naive datetime is refused, as nothing says which zone it is
  in (the producer's, the worker's, UTC?) and a wrong guess shifts the job by hours; an ``at``
  in the past runs now;
* not both.

Example::

    >>> plan_schedule(delay=parse_delay("5m")).delay
    300.0
    >>> plan_schedule(at=parse_at("2026-12-01T10:00:00Z")).at
    1796119200.0
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta

from workers.broker.schedule import Schedule

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


class InvalidSchedule(ValueError):
    """A ``delay``/``at`` that cannot be honoured: negative, naive, both, or unparsable."""


def plan_schedule(
    delay: float | timedelta | None = None, at: datetime | None = None
) -> Schedule | None:
    """The :class:`Schedule` for ``delay`` seconds or ``at``; None when neither is given."""
    if delay is not None and at is not None:
        raise InvalidSchedule("give delay or at, not both")
    if delay is not None:
        seconds = delay.total_seconds() if isinstance(delay, timedelta) else delay
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise InvalidSchedule(f"delay must be seconds (a number), not {delay!r}")
        if not math.isfinite(seconds) or seconds < 0:
            raise InvalidSchedule(f"delay must be 0 or more seconds, not {delay!r}")
        return Schedule(delay=float(seconds))
    if at is not None:
        if not isinstance(at, datetime):
            raise InvalidSchedule(f"at must be a datetime, not {at!r}")
        if at.tzinfo is None or at.utcoffset() is None:
            raise InvalidSchedule(
                f"at={at.isoformat()} has no timezone: give an aware datetime "
                "(e.g. datetime(..., tzinfo=timezone.utc))"
            )
        return Schedule(at=at.timestamp())  # in the past: due now, moved at once
    return None


def parse_delay(text: str) -> float:
    """Seconds in ``"90"``, ``"90s"``, ``"1.5m"``, ``"2h"``, ``"1d"``, ``"500ms"``.

    >>> parse_delay("2h")
    7200.0
    """
    match = _DURATION.match(text or "")
    if not match:
        raise InvalidSchedule(
            f"{text!r} is not a delay: use seconds or a number with s, m, h, d or ms "
            "(e.g. 90s, 5m, 2h)"
        )
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_at(text: str) -> datetime:
    """An ISO 8601 time with a timezone: ``2026-12-01T10:00:00Z``, ``…+01:00``.

    >>> parse_at("2026-12-01T10:00:00Z").isoformat()
    '2026-12-01T10:00:00+00:00'
    """
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidSchedule(
            f"{text!r} is not a time: use ISO 8601 with a timezone, e.g. 2026-12-01T10:00:00Z"
        ) from None
    if value.tzinfo is None:
        raise InvalidSchedule(f"{text!r} has no timezone: add Z (UTC) or an offset such as +01:00")
    return value
