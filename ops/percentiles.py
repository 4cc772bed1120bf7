"""The one percentile function every summary uses: ``jobq top``, the demo summary, benchmarks.

Linear interpolation between the closest ranks is numpy's default, so the numbers match what a
reader would compute from the same samples.

Example::

    >>> percentile([1.0, 2.0, 3.0, 4.0], 50)
    2.5
    >>> percentile([10.0], 95)
    10.0
    >>> percentile([], 50) is None
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

Empty = TypeVar("Empty", float, None)


def percentile(values: Sequence[float], q: float, *, empty: Empty = None) -> float | Empty:
    """The ``q``-th percentile (0–100) of ``values``; ``empty`` (None) when there are none."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, not {q}")
    if not values:
        return empty
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
