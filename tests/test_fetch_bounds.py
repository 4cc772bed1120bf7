"""What a pipeline may keep: fetch_url's size cap and the lifetime of its page in Redis.

Each test starts its own workers with its own settings, so they are not in test_pipeline.py,
whose workers are shared by the module.
"""

from __future__ import annotations

import pytest

from producers import submit, validate
from workers.app import get_app
from workers.registry.schema import InvalidArguments


def test_a_pipeline_keeps_its_page_in_redis_no_longer_than_jobq_body_ttl(
    workers, local_site, redis_client
):
    workers("io", concurrency=4, env={"JOBQ_BODY_TTL": "30"})
    workers("cpu", concurrency=1)

    submit("fetch_and_analyze", url=local_site.url("/page/3")).get(timeout=60)

    (key,) = redis_client.keys("jobq:body:*")
    assert 0 < redis_client.ttl(key) <= 30


def test_max_bytes_above_its_limit_is_refused_before_and_where_it_runs(
    workers, local_site, redis_client
):
    with pytest.raises(InvalidArguments, match="JOBQ_FETCH_MAX_BYTES_LIMIT"):
        validate("fetch_url", {"url": "http://127.0.0.1/", "max_bytes": 10**12})
    # A message from any Celery client is checked again by the worker, against its own setting.
    workers(
        "io",
        concurrency=4,
        env={"JOBQ_FETCH_MAX_BYTES": "2048", "JOBQ_FETCH_MAX_BYTES_LIMIT": "4096"},
    )
    handle = get_app().send_task(
        "fetch_url", kwargs={"url": local_site.url("/bytes/5000"), "max_bytes": 10**6}, queue="io"
    )
    with pytest.raises(Exception, match="JOBQ_FETCH_MAX_BYTES_LIMIT"):
        handle.get(timeout=30)
