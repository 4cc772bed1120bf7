"""A pipeline crosses both pools: fetch on gevent, analyze on prefork.

The tests only submit jobs and read their results, so they share one I/O and one CPU worker
(``shared_workers``); each still starts on an empty database.
"""

from __future__ import annotations

import hashlib

import pytest
from celery import Celery

from ops.local_site import prose
from producers import submit
from workers.app import get_app
from workers.jobs.text import analyze
from workers.stores.job_records import read_records

from .waiting import wait_until


def test_fetch_and_analyze_returns_the_analysis_of_the_local_page(shared_workers, local_site):
    io_worker = shared_workers("io", concurrency=10)
    cpu_worker = shared_workers("cpu", concurrency=1)
    page = prose(7, 2000)

    handle = submit("fetch_and_analyze", url=local_site.url("/page/7"), top=5)
    analysis = handle.get(timeout=60)

    expected = analyze(page, top=5)
    assert analysis["words"] == expected["words"]
    assert analysis["top_terms"] == [list(pair) for pair in expected["top_terms"]]
    assert analysis["source"]["sha256"] == hashlib.sha256(page.encode()).hexdigest()
    # The analysis ran on the CPU worker, the fetch before it on the I/O worker. A prefork
    # worker stores the job's record just after its result (task_postrun): wait for it.
    (last,) = wait_until(
        lambda: [r for r in read_records([handle.id]) if r.get("name")], timeout=10
    )
    assert last["worker"] == cpu_worker.node_name
    assert last["parent_id"]
    (first,) = read_records([last["parent_id"]])
    assert first["name"] == "fetch_url"
    assert first["worker"] == io_worker.node_name


def test_fetch_url_reports_status_size_and_digest(shared_workers, local_site):
    shared_workers("io", concurrency=10)

    result = submit("fetch_url", url=local_site.url("/bytes/1000")).get(timeout=30)

    assert result["status"] == 200
    assert result["bytes"] == 1000
    assert result["sha256"] == hashlib.sha256(b"x" * 1000).hexdigest()


def test_fetch_url_refuses_a_body_over_its_size_cap(shared_workers, local_site):
    shared_workers("io", concurrency=10)

    handle = submit("fetch_url", url=local_site.url("/bytes/5000"), max_bytes=1024)
    with pytest.raises(Exception, match="max_bytes"):
        handle.get(timeout=30)


def test_fetch_url_follows_redirects_to_the_page(shared_workers, local_site):
    shared_workers("io", concurrency=10)

    result = submit("fetch_url", url=local_site.url("/redirect/3")).get(timeout=30)

    assert result["status"] == 200
    assert result["sha256"] == hashlib.sha256(prose(3, 2000).encode()).hexdigest()


def test_fetch_url_gives_up_after_its_timeout(shared_workers, local_site):
    shared_workers("io", concurrency=10)

    handle = submit("fetch_url", url=local_site.url("/delay/5000"), timeout=0.5)
    with pytest.raises(Exception, match=r"no complete response in 0\.5 s"):
        handle.get(timeout=30)


def test_download_follows_redirects_and_caps_bodies_outside_a_worker_too(local_site):
    from workers.jobs.http import ResponseTooLarge, download

    status, body, _ = download(local_site.url("/redirect/3"), timeout=10, max_bytes=10**6)
    assert status == 200
    assert body == prose(3, 2000).encode()
    with pytest.raises(ResponseTooLarge):
        download(local_site.url("/bytes/5000"), timeout=10, max_bytes=1000)


def test_a_pipeline_goes_to_jobq_whatever_celery_app_the_process_made_current(
    shared_workers, local_site
):
    # A user's process may build its own Celery app (it becomes Celery's current app); the
    # steps of a jobq pipeline are shared tasks, which follow the current app unless bound.
    shared_workers("io", concurrency=10)
    shared_workers("cpu", concurrency=1)
    Celery("someone-elses-app", broker="redis://127.0.0.1:1/0", set_as_current=True)
    try:
        handle = submit("fetch_and_analyze", url=local_site.url("/page/4"), top=3)
        assert handle.get(timeout=60)["words"] == analyze(prose(4, 2000), top=3)["words"]
    finally:
        get_app().set_current()
