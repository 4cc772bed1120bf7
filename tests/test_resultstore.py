"""The one-round-trip result store keeps Celery's rules: a SUCCESS is never overwritten."""

from __future__ import annotations

import json

from celery import states
from celery.result import AsyncResult

from workers.app import app
from workers.resultstore import AtomicRedisBackend


def test_the_app_stores_results_with_the_atomic_backend():
    assert isinstance(app.backend, AtomicRedisBackend)


def test_a_stored_success_is_never_overwritten_by_a_late_duplicate(redis_client):
    app.backend.store_result("job-1", {"n": 1}, states.SUCCESS)
    app.backend.store_result("job-1", None, states.STARTED)
    app.backend.store_result("job-1", ValueError("late duplicate"), states.FAILURE)

    result = AsyncResult("job-1", app=app)
    assert result.state == states.SUCCESS
    assert result.get(timeout=5) == {"n": 1}


def test_states_before_success_are_replaced_and_expire(redis_client):
    app.backend.store_result("job-2", None, states.STARTED)
    app.backend.store_result("job-2", 42, states.SUCCESS)

    key = app.backend.get_key_for_task("job-2")
    assert json.loads(redis_client.get(key))["result"] == 42
    assert 0 < redis_client.ttl(key) <= app.conf.result_expires


def test_a_failure_is_kept_for_the_failure_expiry(redis_client):
    app.backend.store_result("job-3", ValueError("boom"), states.FAILURE)

    key = app.backend.get_key_for_task("job-3")
    assert AsyncResult("job-3", app=app).state == states.FAILURE
    assert redis_client.ttl(key) > app.conf.result_expires  # failures are kept longer
