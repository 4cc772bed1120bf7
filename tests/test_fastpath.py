"""The worker's cheap repr of small results (workers/features/library_patches.py) is exactly
Celery's saferepr, and the patch that installs it lives and dies with a worker."""

from __future__ import annotations

import math

import celery.app.trace
import pytest
from celery.utils.saferepr import saferepr

from workers.features.library_patches import fast_saferepr

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


def test_the_patches_are_applied_while_a_worker_is_built_and_undone_when_it_stops():
    # The bootstep patches in create() (before prefork forks its children) and restores on stop;
    # a producer process, which never builds a worker, keeps Celery's own (tests/test_structure.py).
    import redis.utils

    from workers.features.library_patches import LibraryPatches

    original_repr, original_version = celery.app.trace.saferepr, redis.utils.get_lib_version
    step = LibraryPatches.__new__(LibraryPatches)
    step.originals = {}
    step.create(parent=None)
    try:
        assert celery.app.trace.saferepr is fast_saferepr
        assert redis.utils.get_lib_version() == original_version()
    finally:
        step.stop(parent=None)
    assert celery.app.trace.saferepr is original_repr
    assert redis.utils.get_lib_version is original_version
