"""``Throttle``: let the first value through at once, then at most one per interval, the latest.

A job may report progress thousands of times a second; Redis should see a few writes a second
per job whatever the job calls. The throttle decides, for each value offered, whether to write it
now; a value held back is the *pending* one, written by the first offer after the interval or by
:meth:`Throttle.drain` when the job ends, so the last value a job reported is always the one
stored. Pure logic with an injected clock, so it is tested without sleeping.

Example::

    >>> clock = iter([0.0, 0.1, 0.2, 0.3]).__next__
    >>> throttle = Throttle(interval=0.25, clock=clock)
    >>> throttle.offer(1), throttle.offer(2), throttle.offer(3), throttle.offer(4)
    (1, None, None, 4)
    >>> throttle.drain() is None
    True
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class Throttle(Generic[T]):
    """At most one value per ``interval`` seconds passes; the latest held-back one is pending."""

    interval: float
    clock: Callable[[], float] = time.monotonic
    _last: float | None = field(default=None, init=False)
    _pending: T | None = field(default=None, init=False)

    def offer(self, value: T) -> T | None:
        """``value`` if it should be written now, else None (it becomes the pending value)."""
        now = self.clock()
        if self._last is None or now - self._last >= self.interval:
            self._last = now
            self._pending = None
            return value
        self._pending = value
        return None

    def mark_written(self) -> None:
        """A held-back value was written (by a timer): the next interval starts now."""
        self._last = self.clock()

    def drain(self) -> T | None:
        """The value held back since the last write, if any (then nothing is pending)."""
        value, self._pending = self._pending, None
        return value
