"""Settings other modules read through ``Settings`` rather than from the environment."""

from __future__ import annotations

import logging

import pytest
from pydantic import ValidationError

from producers import submit
from workers.features.log_context import JsonJobFormatter, TextJobFormatter, format_handlers
from workers.settings import Settings, get_settings


@pytest.fixture
def fresh_settings():
    """``get_settings()`` re-reads the environment in this test, and again after it."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def formatter_for(monkeypatch, value: str | None) -> logging.Formatter | None:
    if value is None:
        monkeypatch.delenv("JOBQ_LOG_FORMAT", raising=False)
    else:
        monkeypatch.setenv("JOBQ_LOG_FORMAT", value)
    get_settings.cache_clear()
    logger = logging.Logger("jobq-test")
    logger.addHandler(logging.StreamHandler())
    format_handlers(logger)
    return logger.handlers[0].formatter


def test_log_format_is_read_through_settings(monkeypatch, fresh_settings):
    assert isinstance(formatter_for(monkeypatch, None), TextJobFormatter)
    assert isinstance(formatter_for(monkeypatch, "json"), JsonJobFormatter)


@pytest.mark.parametrize(("value", "read"), [("JSON", "json"), (" json ", "json"), ("", "text")])
def test_log_format_is_read_in_any_case_as_it_always_was(monkeypatch, value, read):
    monkeypatch.setenv("JOBQ_LOG_FORMAT", value)
    assert Settings().log_format == read


@pytest.mark.parametrize("value", ["xml", "yaml"])
def test_log_format_accepts_only_text_or_json(monkeypatch, value):
    monkeypatch.setenv("JOBQ_LOG_FORMAT", value)
    with pytest.raises(ValidationError, match="log_format"):
        Settings()


def test_fast_paths_are_on_by_default_and_can_be_switched_off(monkeypatch):
    monkeypatch.delenv("JOBQ_FAST_PATHS", raising=False)
    assert Settings().fast_paths is True
    monkeypatch.setenv("JOBQ_FAST_PATHS", "false")
    assert Settings().fast_paths is False


def test_fetch_url_uses_the_workers_body_limit_by_default(workers, local_site):
    # JOBQ_FETCH_MAX_BYTES is read by the worker that runs the job, not by the submitter.
    workers("io", concurrency=5, env={"JOBQ_FETCH_MAX_BYTES": "2048"})

    small = submit("fetch_url", url=local_site.url("/bytes/1000"))
    big = submit("fetch_url", url=local_site.url("/bytes/5000"))
    allowed = submit("fetch_url", url=local_site.url("/bytes/5000"), max_bytes=10_000)

    assert small.get(timeout=30)["bytes"] == 1000
    with pytest.raises(Exception, match="max_bytes 2048"):
        big.get(timeout=30)
    assert allowed.get(timeout=30)["bytes"] == 5000


def test_fetch_max_bytes_has_an_upper_bound():
    with pytest.raises(ValidationError, match="fetch_max_bytes_limit"):
        Settings(fetch_max_bytes_limit=10**12)
    with pytest.raises(ValidationError, match="above JOBQ_FETCH_MAX_BYTES_LIMIT"):
        Settings(fetch_max_bytes=10**7, fetch_max_bytes_limit=10**6)
