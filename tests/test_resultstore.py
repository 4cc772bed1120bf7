"""Results keep Celery's rules on both result stores: a SUCCESS is never overwritten.

With ``JOBQ_FAST_PATHS`` on, workers write each result in one Lua call
(workers/broker/result_backend.py); off, with Celery's own ``RedisBackend``. Clients cannot
tell the difference, and neither may a late duplicate.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from celery import Celery, states
from celery.result import AsyncResult

from workers.app import create_app, get_app
from workers.settings import get_settings


@pytest.fixture(params=[True, False], ids=["fast-paths", "stock"])
def app(request: pytest.FixtureRequest, redis_client) -> Iterator[Celery]:
    built = create_app(get_settings().model_copy(update={"fast_paths": request.param}))
    yield built
    get_app().set_current()  # the shared_task proxies follow the current app


def test_the_switch_chooses_the_store(app):
    fast = app.conf.jobq_fast_paths
    assert (type(app.backend).__name__ == "AtomicRedisBackend") is fast
    assert (type(app.backend).__name__ == "RedisBackend") is not fast


def test_a_stored_success_is_never_overwritten_by_a_late_duplicate(app):
    app.backend.store_result("job-1", {"n": 1}, states.SUCCESS)
    app.backend.store_result("job-1", None, states.STARTED)
    app.backend.store_result("job-1", ValueError("late duplicate"), states.FAILURE)

    result = AsyncResult("job-1", app=app)
    assert result.state == states.SUCCESS
    assert result.get(timeout=5) == {"n": 1}


def test_states_before_success_are_replaced_and_expire(app, redis_client):
    app.backend.store_result("job-2", None, states.STARTED)
    app.backend.store_result("job-2", 42, states.SUCCESS)

    key = app.backend.get_key_for_task("job-2")
    assert json.loads(redis_client.get(key))["result"] == 42
    assert 0 < redis_client.ttl(key) <= app.conf.result_expires


def test_a_failure_is_kept_for_the_failure_expiry(app, redis_client):
    app.backend.store_result("job-3", ValueError("boom"), states.FAILURE)

    key = app.backend.get_key_for_task("job-3")
    assert AsyncResult("job-3", app=app).state == states.FAILURE
    assert redis_client.ttl(key) > app.conf.result_expires  # failures are kept longer
