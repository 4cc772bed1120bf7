"""The worker's cheap repr of small results (workers/fastpath.py) is exactly Celery's saferepr."""

from __future__ import annotations

import math

import celery.app.trace
import pytest
from celery.utils.saferepr import saferepr

from workers.fastpath import fast_saferepr

RESULTS = [
    {"url": "http://127.0.0.1:8000/100", "status": 200, "bytes": 3, "sha256": "a" * 64},
    {"elapsed": 0.100123, "none": None, "flag": True, "tiny": 1.5e-7, "neg": -0.0},
    {"nan": math.nan, "inf": math.inf, "big": 10**30},
    [1, 2.5, None, "x", False],
    "plain text",
    42,
    None,
    {"quote": "it's"},  # quotes and escapes: Celery's rendering differs from repr; theirs wins
    {"backslash": "a\\b", "newline": "a\nb", "unicode": "é😀"},
    {"nested": {"a": [1, 2]}},
    {"long": "x" * 5000},
    {n: n for n in range(100)},
    (1, 2),
    b"bytes",
]


@pytest.mark.parametrize("value", RESULTS, ids=range(len(RESULTS)))
@pytest.mark.parametrize("maxlen", [1024, 40])
def test_fast_saferepr_matches_celerys_saferepr(value, maxlen):
    assert fast_saferepr(value, maxlen) == saferepr(value, maxlen)


def test_the_worker_tracer_uses_it():
    assert celery.app.trace.saferepr is fast_saferepr
