"""Settings other modules read through ``Settings`` rather than from the environment."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from workers.logcontext import log_format
from workers.settings import Settings, get_settings


@pytest.fixture
def fresh_settings():
    """``get_settings()`` re-reads the environment in this test, and again after it."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_log_format_is_read_through_settings(monkeypatch, fresh_settings):
    monkeypatch.delenv("JOBQ_LOG_FORMAT", raising=False)
    assert log_format() == "text"
    monkeypatch.setenv("JOBQ_LOG_FORMAT", "json")
    get_settings.cache_clear()
    assert log_format() == "json"


@pytest.mark.parametrize("value", ["xml", "JSON", ""])
def test_log_format_accepts_only_text_or_json(monkeypatch, value):
    monkeypatch.setenv("JOBQ_LOG_FORMAT", value)
    with pytest.raises(ValidationError, match="log_format"):
        Settings()


def test_fast_paths_are_on_by_default_and_can_be_switched_off(monkeypatch):
    monkeypatch.delenv("JOBQ_FAST_PATHS", raising=False)
    assert Settings().fast_paths is True
    monkeypatch.setenv("JOBQ_FAST_PATHS", "false")
    assert Settings().fast_paths is False
