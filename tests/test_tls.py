"""TLS to Redis (``rediss://``): workers and producers verify the server, private CA included.

A real ``redis-server`` listening for TLS only, with a certificate of a CA made for the test
(trustme) and Redis's default of asking clients for a certificate too. A worker and ``jobq
submit`` configured with ``JOBQ_REDIS_CA_FILE`` / ``_CERT_FILE`` / ``_KEY_FILE`` run a job over
it; a producer that does not trust that CA is refused, with the reason, and exits 1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from ops.redis_server import RedisServer, TlsFiles, start_redis


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[RedisServer]:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    files = TlsFiles(ca=tmp_path / "ca.pem", cert=tmp_path / "redis.pem", key=tmp_path / "key.pem")
    ca.cert_pem.write_to_path(str(files.ca))
    leaf.cert_chain_pems[0].write_to_path(str(files.cert))
    leaf.private_key_pem.write_to_path(str(files.key))
    server = start_redis(data_dir=tmp_path / "redis", tls=files)
    yield server
    server.stop()


def _env(server: RedisServer, *, trust: bool) -> dict[str, str]:
    assert server.tls is not None
    env = {
        **os.environ,
        "REDIS_URL": server.url,
        "JOBQ_PRODUCER_RETRY_FOR": "0",
        "JOBQ_REDIS_CERT_FILE": str(server.tls.cert),
        "JOBQ_REDIS_KEY_FILE": str(server.tls.key),
    }
    if trust:
        env["JOBQ_REDIS_CA_FILE"] = str(server.tls.ca)
    return env


def _jobq(*args: str, env: dict[str, str], timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ops", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**env, "COLUMNS": "200"},
        check=False,
    )


def test_a_job_runs_over_tls_with_a_private_ca(tls_redis: RedisServer, workers):
    assert tls_redis.url.startswith("rediss://")
    env = _env(tls_redis, trust=True)
    # Not waited for with a ping here: the test process's own app points at the plain test
    # Redis; the job finishing is the proof that the worker consumes over TLS.
    worker = workers("io", env=env, ready=False, concurrency=2)

    done = _jobq("submit", "io_wait", "ms=5", "--wait", "--json", env=env)

    assert done.returncode == 0, done.stderr + worker.log_tail()
    (row,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert row["state"] == "SUCCESS"
    assert row["result"]["ms"] == 5
    assert "rediss://:**@127.0.0.1" in worker.log_tail()  # Celery's banner: the TLS broker


def test_a_server_certificate_from_an_unknown_ca_is_refused(tls_redis: RedisServer):
    done = _jobq("submit", "io_wait", "ms=5", env=_env(tls_redis, trust=False))

    assert done.returncode == 1
    assert done.stdout.strip() == ""
    assert "certificate verify failed" in done.stderr
    assert tls_redis.client().llen("io") == 0  # nothing reached the queue


@pytest.mark.integration
def test_a_client_certificate_needs_its_key():
    env = {**os.environ, "JOBQ_REDIS_CERT_FILE": "/tmp/only-a-cert.pem", "JOBQ_REDIS_KEY_FILE": ""}
    done = _jobq("submit", "io_wait", "ms=5", env=env)

    assert done.returncode == 2
    assert "JOBQ_REDIS_CERT_FILE and JOBQ_REDIS_KEY_FILE go together" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_url_cannot_turn_certificate_checks_off(tls_redis: RedisServer):
    # redis-py and Celery would let the URL's ssl_cert_reqs win over jobq's CERT_REQUIRED.
    env = {**_env(tls_redis, trust=False), "REDIS_URL": tls_redis.url + "?ssl_cert_reqs=none"}
    done = _jobq("submit", "io_wait", "ms=5", env=env)

    assert done.returncode == 2
    assert "must not set ssl_cert_reqs" in done.stderr
    assert tls_redis.client().llen("io") == 0
