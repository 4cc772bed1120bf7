"""Secure by default: Flower never starts unauthenticated where others can reach it.

Flower's API can revoke jobs and shut workers down. ``jobq flower`` refuses to start without
``FLOWER_BASIC_AUTH`` (or OAuth), and allows ``--no-auth`` only on a loopback address. The
refusals happen before Flower is imported or a port is opened, so these tests start nothing:
they run the command in this process (Click's runner) with ``os.execv`` — how ``jobq flower``
becomes Flower — replaced by a recorder, so a check that let Flower start fails the test
instead of replacing pytest with Flower. One test runs the real console script for the exit
status and the one-line message a user sees.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from click.testing import CliRunner, Result

from ops import flower as flower_module
from ops.cli import main
from ops.processes import jobq_argv


@pytest.fixture
def execs(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The command lines ``jobq flower`` would have exec'd into (none when it refuses)."""
    calls: list[list[str]] = []
    monkeypatch.setattr(flower_module.os, "execv", lambda path, argv: calls.append(list(argv)))
    return calls


def flower(*args: str, **env: str) -> Result:
    unset = dict.fromkeys((k for k in os.environ if k.startswith("FLOWER_")), None)
    return CliRunner().invoke(main, ["flower", *args], env={**unset, **env})


def refused(result: Result, execs: list[list[str]]) -> str:
    """The refusal's message, after checking it is a usage error that started nothing."""
    assert result.exit_code == 2, result.output
    assert execs == [], "Flower was started"
    return " ".join(result.stderr.split())


@pytest.mark.parametrize("address", ["0.0.0.0", "127.0.0.1"])
def test_flower_without_credentials_refuses_to_start(address: str, execs) -> None:
    message = refused(flower("--address", address), execs)
    assert "refusing to start Flower without authentication" in message
    assert "FLOWER_BASIC_AUTH" in message


def test_no_auth_is_refused_on_a_public_address(execs) -> None:
    message = refused(flower("--address", "0.0.0.0", "--no-auth"), execs)
    assert "127.0.0.1 only" in message


@pytest.mark.parametrize("credentials", ["admin", "admin:", ":secret", "a:b,c:"])
def test_basic_auth_with_an_empty_user_or_password_is_refused(credentials: str, execs) -> None:
    message = refused(flower("--address", "0.0.0.0", FLOWER_BASIC_AUTH=credentials), execs)
    assert "each part non-empty" in message


def test_passed_through_options_cannot_override_the_address(execs) -> None:
    message = refused(flower("--no-auth", "--", "--address=0.0.0.0"), execs)
    assert "--address=0.0.0.0 with jobq flower's own options" in message


def test_with_credentials_flower_starts_and_they_stay_off_its_command_line(execs) -> None:
    # The other side of the refusals: valid credentials do start Flower, on the address asked
    # for, and the password travels in the environment, never in argv where ps shows it.
    result = flower("--address", "0.0.0.0", "--port", "5601", FLOWER_BASIC_AUTH="ops:s3cret")

    assert result.exit_code == 0, result.output
    (argv,) = execs
    assert argv[argv.index("-A") + 1 : argv.index("-A") + 3] == ["ops.flower_app", "flower"]
    assert "--address=0.0.0.0" in argv
    assert "--port=5601" in argv
    assert not any("s3cret" in arg for arg in argv)


def test_no_auth_on_loopback_starts_flower(execs) -> None:
    result = flower("--address", "127.0.0.1", "--no-auth")

    assert result.exit_code == 0, result.output
    (argv,) = execs
    assert "--address=127.0.0.1" in argv


@pytest.mark.integration
def test_the_console_script_refuses_with_exit_2_and_says_why() -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLOWER_")}
    done = subprocess.run(
        jobq_argv("flower", "--address", "0.0.0.0"),
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "refusing to start Flower without authentication" in done.stderr
    assert "Traceback" not in done.stderr
