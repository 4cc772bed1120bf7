"""Waiting for conditions with a deadline: tests never sleep a fixed time and hope."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest


def wait_until(
    condition: Callable[[], Any], *, timeout: float, interval: float = 0.05, message: str = ""
) -> Any:
    """Poll ``condition`` until it returns something truthy, or fail after ``timeout`` seconds.

    >>> wait_until(lambda: 42, timeout=1)
    42
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(message or f"condition not met within {timeout}s")
