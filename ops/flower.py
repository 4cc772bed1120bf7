"""``jobq flower``: Flower for jobq's app, refusing to run without authentication.

Flower's API can revoke jobs and shut workers down, and it has no authentication by default.
So jobq starts it only with basic auth (``FLOWER_BASIC_AUTH=user:password``) — or, on
127.0.0.1 only, with the explicit ``--no-auth`` flag. The credentials travel in the environment,
never on the command line where ``ps`` would show them. Flower runs unpatched in its own process:
a CPU-bound greenlet in a gevent worker would otherwise make it miss heartbeats.

Example::

    $ FLOWER_BASIC_AUTH=admin:$(openssl rand -hex 16) jobq flower --address 0.0.0.0
"""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path

import click

LOOPBACK = ("127.0.0.1", "localhost", "::1")
# Flower executes ./flowerconfig.py by default, and what it sets overrides FLOWER_* variables
# (basic_auth = [] there would turn authentication off). jobq's Flower reads this file instead.
CONFIG_FILE = Path(__file__).with_name("flower_config.py")


def flower_argv(
    *, address: str, port: int, persistent_db: str | None, extra: tuple[str, ...] = ()
) -> list[str]:
    """The ``celery flower`` command line for jobq's app."""
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        # jobq's app on the plain redis:// transport, so Flower shows queue lengths (see there).
        "ops.flower_app",
        "flower",
        f"--conf={CONFIG_FILE}",
        f"--address={address}",
        f"--port={port}",
        # Flower keeps every task in memory; 100 000 by default is a lot
        # (https://github.com/mher/flower/issues/1305).
        "--max_tasks=20000",
        "--purge_offline_workers=300",
    ]
    if persistent_db:
        argv += ["--persistent=True", f"--db={persistent_db}", "--state_save_interval=60000"]
    return [*argv, *extra]


# Flower's options that jobq sets or checks itself. Flower (tornado) reads "-" and "_" alike in
# option names (--unix-socket is --unix_socket), so names are compared with "_".
GUARDED_FLOWER_OPTIONS = frozenset({"address", "port", "unix_socket", "basic_auth", "auth", "conf"})


def option_name(argument: str) -> str | None:
    """The Flower option an argument sets, in tornado's spelling, or None.

    >>> option_name("--unix-socket=/tmp/f.sock"), option_name("-port"), option_name("x")
    ('unix_socket', 'port', None)
    """
    if not argument.startswith("-"):
        return None
    return argument.lstrip("-").split("=", 1)[0].replace("-", "_")


def valid_basic_auth(credentials: str) -> bool:
    """Every ``user:password`` pair of a Flower basic-auth list has both parts.

    >>> valid_basic_auth("admin:s3cret"), valid_basic_auth("admin:"), valid_basic_auth(":")
    (True, False, False)
    """
    pairs = [pair.partition(":") for pair in credentials.split(",")]
    return all(user and sep and password for user, sep, password in pairs)


def is_loopback(address: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


@click.command()
@click.option("--address", default="127.0.0.1", show_default=True)
@click.option("--port", default=5555, show_default=True, type=int)
@click.option("--db", "persistent_db", help="Keep Flower's state in this file across restarts.")
@click.option("--no-auth", is_flag=True, help="Allow no authentication (127.0.0.1 only).")
@click.argument("flower_args", nargs=-1, type=click.UNPROCESSED)
def flower_command(
    address: str, port: int, persistent_db: str | None, no_auth: bool, flower_args: tuple[str, ...]
) -> None:
    """Run Flower for jobq (basic auth from FLOWER_BASIC_AUTH=user:password)."""
    credentials = os.environ.get("FLOWER_BASIC_AUTH", "")
    has_oauth = bool(os.environ.get("FLOWER_AUTH"))
    if not credentials and not has_oauth:
        if not no_auth:
            raise click.UsageError(
                "refusing to start Flower without authentication: set FLOWER_BASIC_AUTH="
                "user:password (or FLOWER_AUTH for OAuth); --no-auth is allowed on 127.0.0.1 only"
            )
        if not is_loopback(address):
            raise click.UsageError(f"--no-auth is allowed on 127.0.0.1 only, not on {address}")
    elif credentials and not valid_basic_auth(credentials):
        raise click.UsageError(
            "FLOWER_BASIC_AUTH must look like user:password[,user:password…], each part non-empty"
        )
    overriding = [a for a in flower_args if option_name(a) in GUARDED_FLOWER_OPTIONS]
    if overriding:
        # Passed through, these would bypass the checks above (e.g. --no-auth, then --address).
        raise click.UsageError(f"set {', '.join(overriding)} with jobq flower's own options")
    argv = flower_argv(address=address, port=port, persistent_db=persistent_db, extra=flower_args)
    os.execv(argv[0], argv)
