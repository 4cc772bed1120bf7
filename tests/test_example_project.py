"""The example project (examples/invoices) runs from outside the repository on real workers.

The project is copied to a temporary directory, as a user's own checkout would be, and used from
there without installing it (``PYTHONPATH`` names the copy): its jobs run on real ``jobq worker``
processes started with ``JOBQ_JOBS=invoices.jobs``, its batch script prints the summary, and its
own tests pass with jobq's pytest plugin. Its Dockerfile and compose override are checked
offline, as tests/test_compose.py checks jobq's own.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "invoices"
OVERRIDE = EXAMPLE / "compose.override.yml"
# The Compose Specification's schema sits beside the project (../shared), or beside the
# directory of git worktrees that hold it.
SCHEMAS = [base / "shared" / "schemas" / "compose-spec.json" for base in ROOT.parents[:2]]
RATES = {"amount": 1.0, "base": "EUR", "date": "2026-11-30", "rates": {"USD": 1.1}}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the example outside the repository, without caches the repository may hold."""
    copy = tmp_path / "invoices"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    assert not copy.resolve().is_relative_to(ROOT)
    return copy


def project_env(project: Path, **extra: str) -> dict[str, str]:
    """This process's environment minus pytest's own variables, the project on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    return {**env, "PYTHONPATH": str(project), **extra}


@pytest.fixture
def rates_service() -> Iterator[str]:
    """A rates service on 127.0.0.1 answering like frankfurter.app's ``/latest``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(RATES).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/latest?from=EUR"
    finally:
        server.shutdown()
        server.server_close()


def test_the_batch_script_runs_outside_the_repository_on_real_workers(
    project, workers, rates_service
):
    env = project_env(project, JOBQ_JOBS="invoices.jobs")
    # The workers import invoices.jobs from the copy, not from the repository.
    started = [
        workers("io", env=env, ready=False),
        workers("cpu", env=env, concurrency=2, ready=False),
    ]
    for worker in started:  # both start at once
        worker.wait_ready(timeout=60)

    run = subprocess.run(
        [sys.executable, "-m", "invoices.submit_batch", "--count", "20"],
        cwd=project,
        env={**env, "INVOICES_RATES_URL": rates_service},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )

    assert run.returncode == 0, run.stderr
    # Invoice i: i x 10.00 + 4.99, tax 20 % rounded per invoice (2i + 1.00); 1 EUR = 1.1 USD.
    assert run.stdout.splitlines() == [
        "priced 20 invoices on the cpu workers; 1 EUR = 1.1 USD (rates of 2026-11-30)",
        "net 2199.80 EUR, tax 440.00 EUR, gross 2639.80 EUR = 2903.78 USD",
    ]


def test_the_projects_own_tests_pass_with_the_plugin(project, redis_client):
    # REDIS_URL still names this suite's Redis: the plugin must use a private one instead.
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        env=project_env(project),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert re.search(r"\b2 passed\b", run.stdout), run.stdout[-2000:]
    assert redis_client.keys("*") == [], "the example's tests wrote to the suite's Redis"


# --- the image and the compose override, offline ------------------------------------------------


def merged_compose() -> dict[str, Any]:
    """docker-compose.yml with the override applied as compose merges maps (key by key)."""

    def merge(base: Any, override: Any) -> Any:
        if not (isinstance(base, dict) and isinstance(override, dict)):
            return override
        merged = dict(base)
        for key, value in override.items():
            merged[key] = merge(base[key], value) if key in base else value
        return merged

    return merge(
        yaml.safe_load((ROOT / "docker-compose.yml").read_text()),
        yaml.safe_load(OVERRIDE.read_text()),
    )


def test_the_override_runs_the_workers_on_the_projects_image_with_its_jobs():
    compose = merged_compose()
    base_image = compose["services"]["flower"]["image"]  # jobq's own image, unchanged
    dockerfile = (EXAMPLE / "Dockerfile").read_text()
    (default_base,) = re.findall(r"^ARG JOBQ_IMAGE=(\S+)$", dockerfile, re.M)
    assert re.search(r"^FROM \$\{JOBQ_IMAGE\}$", dockerfile, re.M)
    assert default_base == base_image
    assert re.search(r"^ENV JOBQ_JOBS=invoices\.jobs$", dockerfile, re.M)
    assert re.findall(r"^USER (\S+)$", dockerfile, re.M)[-1] == "jobq"  # not root at run time
    for name in ("worker-io", "worker-cpu", "invoices-batch"):
        service = compose["services"][name]
        assert service["image"] != base_image, name
        assert service["build"]["args"]["JOBQ_IMAGE"] == base_image, name
        # Relative to the first file's directory, the repository root, as compose resolves it.
        assert (ROOT / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
        # Set explicitly: jobq's environment block would otherwise blank the image's ENV.
        assert service["environment"]["JOBQ_JOBS"] == "invoices.jobs", name
    for name, pool in (("worker-io", "io"), ("worker-cpu", "cpu")):
        worker = compose["services"][name]
        assert worker["command"] == ["jobq", "worker", pool]
        assert "REDIS_URL" in worker["environment"]  # jobq's block, merged, not replaced
        assert "stop_grace_period" in worker
        assert "healthcheck" in worker
    assert compose["services"]["invoices-batch"]["profiles"] == ["invoices"]
    for source in re.findall(r"^COPY (\S+) ", dockerfile, re.M):
        assert (EXAMPLE / source).exists(), source


@pytest.mark.integration  # runs docker-compose where it is installed
def test_docker_compose_config_accepts_the_override(tmp_path):
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (.ci/run installs it)")
    env_file = tmp_path / "test.env"
    env_file.write_text("REDIS_PASSWORD=test-only-password\nFLOWER_BASIC_AUTH=admin:test-only\n")
    run = subprocess.run(
        [
            binary,
            "--env-file",
            str(env_file),
            "-f",
            "docker-compose.yml",
            "-f",
            str(OVERRIDE),
            "config",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    services = yaml.safe_load(run.stdout)["services"]
    assert services["worker-cpu"]["environment"]["JOBQ_JOBS"] == "invoices.jobs"


def test_the_override_matches_the_compose_specification_schema():
    schema_path = next((path for path in SCHEMAS if path.exists()), None)
    if schema_path is None:
        pytest.skip("the Compose Specification schema exists only beside the project")
    import jsonschema

    schema = json.loads(schema_path.read_text())
    for document in (yaml.safe_load(OVERRIDE.read_text()), merged_compose()):
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(document), key=str)
        assert errors == [], [error.message for error in errors]
