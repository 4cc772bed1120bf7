"""Secure by default: Flower never starts unauthenticated where others can reach it.

Flower's API can revoke jobs and shut workers down. ``jobq flower`` refuses to start without
``FLOWER_BASIC_AUTH`` (or OAuth), and allows ``--no-auth`` only on a loopback address. The
refusals happen before Flower is imported or a port is opened, so these tests start nothing.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from ops.processes import jobq_argv

# Each test runs the real console script.
pytestmark = pytest.mark.integration


def flower(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLOWER_")}
    return subprocess.run(
        jobq_argv("flower", *args),
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("address", ["0.0.0.0", "127.0.0.1"])
def test_flower_without_credentials_refuses_to_start(address: str) -> None:
    done = flower("--address", address)
    assert done.returncode != 0
    assert "refusing to start Flower without authentication" in done.stderr
    assert "FLOWER_BASIC_AUTH" in done.stderr


def test_no_auth_is_refused_on_a_public_address() -> None:
    done = flower("--address", "0.0.0.0", "--no-auth")
    assert done.returncode != 0
    assert "127.0.0.1 only" in done.stderr


@pytest.mark.parametrize("credentials", ["admin", "admin:", ":secret", "a:b,c:"])
def test_basic_auth_with_an_empty_user_or_password_is_refused(credentials: str) -> None:
    done = flower("--address", "0.0.0.0", FLOWER_BASIC_AUTH=credentials)
    assert done.returncode != 0
    assert "each part non-empty" in " ".join(done.stderr.split())


def test_passed_through_options_cannot_override_the_address() -> None:
    done = flower("--no-auth", "--", "--address=0.0.0.0")
    assert done.returncode != 0
    assert "--address=0.0.0.0 with jobq flower's own options" in " ".join(done.stderr.split())
