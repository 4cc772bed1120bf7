"""docker-compose.yml, ops/Dockerfile and .env.example keep the scaling and security rules.

There is no Docker engine on development or CI machines, so nothing is started with compose.
What is checked instead: ``docker-compose config`` accepts the file (skipped only where the
binary is missing), the Compose Specification's JSON schema when it sits beside the project,
the rules that make ``docker compose up --scale worker-cpu=3 --scale worker-io=2`` safe (read
with pyyaml, always), and the commands compose runs, executed here for real: the worker
commands through the pool table, the worker health check against a real worker, Flower's
refusal to run without auth, the demo site and the demo producer's job arguments.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from setuptools import find_packages

from ops.compose_env import COMPOSE_OWNED, compose_settings
from ops.processes import jobq_argv, spawn
from ops.settings_docs import stale_files
from tests.waiting import wait_until
from workers.catalog import get_job
from workers.registry.schema import InvalidArguments
from workers.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "ops" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SCHEMA = ROOT.parent / "shared" / "schemas" / "compose-spec.json"

CORE_SERVICES = {"redis", "worker-io", "worker-cpu", "flower", "exporter"}
WORKERS = {"worker-io": "io", "worker-cpu": "cpu"}
# Obviously fake values for the two required secrets, so compose can interpolate the file.
TEST_SECRETS = {"REDIS_PASSWORD": "test-only-password", "FLOWER_BASIC_AUTH": "admin:test-only"}

_REFERENCE = re.compile(r"\$\$|\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


# --- reading the files ---------------------------------------------------------------------


def load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's interpolation (``${X}``, ``${X:-d}``, ``${X-d}``, ``${X:?e}``, ``$$``)."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name", "op", "arg")
        current = env.get(name)
        if op in (":-", "-") and (current is None or (op == ":-" and current == "")):
            return arg
        if op in (":?", "?") and (current is None or (op == ":?" and current == "")):
            raise KeyError(f"{name}: {arg}")
        return current or ""

    return _REFERENCE.sub(replace, value)


def resolved_compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    """The compose file as compose sees it with ``env`` (default: only the test secrets)."""
    return interpolate(load_compose(), env if env is not None else dict(TEST_SECRETS))


def referenced_variables() -> dict[str, str | None]:
    """Each ``${VAR}`` the compose file uses, with its operator (``:-``, ``:?``, or None)."""
    found: dict[str, str | None] = {}
    lines = COMPOSE_FILE.read_text().splitlines()
    code = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    for match in _REFERENCE.finditer(code):
        if match.group("name"):
            found[match.group("name")] = match.group("op")
    return found


def env_example() -> dict[str, str]:
    """Variables in .env.example, set or shown commented out at their default."""
    found = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^(?:# )?([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def duration_seconds(text: str) -> float:
    """A compose duration (``90s``, ``1m30s``, ``5m``) in seconds."""
    units = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)", text)
    assert "".join(number + unit for number, unit in parts) == text, f"not a duration: {text!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, arguments = line.partition(" ")
            result.append((keyword.upper(), arguments.strip()))
    return result


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """(re-include?, pattern) in file order; the last rule that matches a path decides."""
    rules = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = ""
        for token in re.split(r"(\*\*/|\*\*|\*|\?)", pattern):
            regex += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
                token, re.escape(token)
            )
        rules.append((negate, re.compile(regex + r"\Z")))
    return rules


def in_build_context(relative: str) -> bool:
    """Whether Docker sends ``relative`` (a path under the repo) with the build context."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negate, pattern in dockerignore_rules():
        if any(pattern.match(candidate) for candidate in candidates):
            excluded = not negate
    return not excluded


# --- 1. docker-compose config ------------------------------------------------------------------


def compose_binary() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def run_compose_config(tmp_path: Path, env_lines: dict[str, str]) -> subprocess.CompletedProcess:
    binary = compose_binary()
    if binary is None:
        pytest.skip(
            "neither docker-compose nor `docker compose` is installed (.ci/run installs it)"
        )
    # An explicit env file, so a developer's own .env cannot change what is checked.
    env_file = tmp_path / "test.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in env_lines.items()))
    clean_env = {k: v for k, v in os.environ.items() if k not in TEST_SECRETS}
    return subprocess.run(
        [*binary, "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config"],
        cwd=ROOT,
        env=clean_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.integration
def test_docker_compose_config_accepts_the_file(tmp_path):
    result = run_compose_config(tmp_path, TEST_SECRETS)

    assert result.returncode == 0, result.stderr
    # Every variable has a default or is required: compose warns about none being unset.
    assert "is not set" not in result.stderr, result.stderr
    config = yaml.safe_load(result.stdout)
    assert set(config["services"]) >= CORE_SERVICES
    # compose's own interpolation agrees with the one the other tests use.
    mine = resolved_compose()
    for name in CORE_SERVICES:
        assert config["services"][name].get("environment") == mine["services"][name].get(
            "environment"
        ), name
        assert config["services"][name]["command"] == mine["services"][name]["command"], name


@pytest.mark.integration
def test_docker_compose_refuses_to_run_without_the_secrets(tmp_path):
    result = run_compose_config(tmp_path, {"REDIS_PASSWORD": "", "FLOWER_BASIC_AUTH": ""})

    assert result.returncode != 0
    assert "set REDIS_PASSWORD in .env" in result.stderr


# --- 2. the Compose Specification's schema -----------------------------------------------------


@pytest.mark.skipif(not SCHEMA.exists(), reason=f"{SCHEMA} exists only beside the project")
def test_compose_file_matches_the_compose_specification_schema():
    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    for document in (load_compose(), resolved_compose()):
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(document), key=str)
        assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


# --- 3. the rules that make scaling safe (always checked) ---------------------------------------


def test_no_service_fixes_a_container_name_or_hostname():
    # A fixed name or hostname collides as soon as a service has two replicas, and the
    # hostname is what makes each worker's Celery node name (io@%h) unique.
    for name, service in load_compose()["services"].items():
        assert "container_name" not in service, name
        assert "hostname" not in service, name


def test_redis_and_workers_are_not_published_to_the_host():
    services = load_compose()["services"]
    for name in ("redis", *WORKERS):
        assert "ports" not in services[name], name
        assert services[name].get("network_mode") != "host", name


def test_redis_requires_a_password_persists_and_refuses_to_evict():
    raw = load_compose()["services"]["redis"]
    redis = resolved_compose()["services"]["redis"]
    command = redis["command"]
    options = dict(zip(command[1::2], command[2::2], strict=False))

    assert redis["image"].startswith("redis:7")
    assert command[0] == "redis-server"
    assert options["--appendonly"] == "yes"
    assert options["--requirepass"] == TEST_SECRETS["REDIS_PASSWORD"]
    assert raw["command"][raw["command"].index("--requirepass") + 1].startswith(
        "${REDIS_PASSWORD:?"
    )
    assert options["--maxmemory-policy"] == "noeviction"
    assert re.fullmatch(r"\d+[kmg]b?", options["--maxmemory"])
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    assert redis["volumes"][0].split(":")[0] in load_compose()["volumes"]  # a named volume
    # The health check authenticates through the environment, not through argv.
    test = " ".join(redis["healthcheck"]["test"])
    assert "redis-cli" in test
    assert "PONG" in test
    assert "-a " not in test
    assert TEST_SECRETS["REDIS_PASSWORD"] not in test
    assert redis["environment"]["REDISCLI_AUTH"] == TEST_SECRETS["REDIS_PASSWORD"]


def test_workers_run_the_pool_commands_after_redis_is_healthy():
    services = resolved_compose()["services"]
    for name, pool in WORKERS.items():
        worker = services[name]
        assert worker["command"] == ["jobq", "worker", pool]
        assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
        assert worker["init"] is True  # docker's init forwards TERM to the main process only
        assert worker["environment"]["REDIS_URL"] == (
            f"redis://:{TEST_SECRETS['REDIS_PASSWORD']}@redis:6379/0"
        )
        # Plain TERM: gevent workers crash on cold/soft shutdown and lose in-flight jobs.
        assert worker.get("stop_signal", "SIGTERM") == "SIGTERM"
        assert "REMAP_SIGTERM" not in worker["environment"]
        health = " ".join(worker["healthcheck"]["test"])
        assert "inspect ping" in health
        assert f"-d {pool}@$HOSTNAME" in health


def test_stop_grace_period_outlasts_each_pools_hard_time_limit():
    limits = {
        "worker-io": ("io_time_limit", "JOBQ_IO_TIME_LIMIT", "WORKER_IO_STOP_GRACE_PERIOD"),
        "worker-cpu": ("cpu_time_limit", "JOBQ_CPU_TIME_LIMIT", "WORKER_CPU_STOP_GRACE_PERIOD"),
    }
    example = env_example()
    for name, (field, limit_var, grace_var) in limits.items():
        code_limit = Settings.model_fields[field].default
        grace = duration_seconds(resolved_compose()["services"][name]["stop_grace_period"])
        assert grace > code_limit, f"{name}: {grace}s <= hard limit {code_limit}s"
        # The values .env.example documents are consistent with each other too.
        assert duration_seconds(example[grace_var]) > float(example[limit_var]), name


def test_flower_requires_auth_and_keeps_its_state_in_a_volume():
    raw = load_compose()["services"]["flower"]
    flower = resolved_compose()["services"]["flower"]

    assert raw["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
    with pytest.raises(KeyError, match="FLOWER_BASIC_AUTH"):
        resolved_compose({"REDIS_PASSWORD": "x"})
    command = flower["command"]
    assert command[:2] == ["jobq", "flower"]
    assert "--no-auth" not in command
    db = command[command.index("--db") + 1]
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in flower["volumes"]}
    assert any(db.startswith(path + "/") for path in mounts)
    assert set(mounts.values()) <= set(load_compose()["volumes"])
    (port,) = flower["ports"]
    assert port == "127.0.0.1:5555:5555"  # the host's loopback only, unless FLOWER_HOST_IP says


def test_demo_services_run_only_under_the_demo_profile():
    services = load_compose()["services"]
    unprofiled = {name for name, service in services.items() if not service.get("profiles")}
    assert unprofiled == CORE_SERVICES
    for name in set(services) - CORE_SERVICES:
        assert services[name]["profiles"] == ["demo"], name
        assert services[name].get("restart", "no") == "no" or name == "demo-site"


SECRET_KEY = re.compile(r"PASSWORD|PASS$|AUTH|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY", re.IGNORECASE)
SECRET_FLAGS = ("--requirepass", "--masterauth", "--password", "-a", "--basic-auth")


def credentials_in(node: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """(where, value) for every value in the compose file that carries a credential."""
    if isinstance(node, dict):
        for child_key, child in node.items():
            yield from credentials_in(child, str(child_key))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from credentials_in(item, key)
            if item in SECRET_FLAGS and index + 1 < len(node):
                yield item, str(node[index + 1])
    elif isinstance(node, str):
        if SECRET_KEY.search(key):
            yield key, node
        # The password of a URL's user:password@ (an interpolation may hold spaces).
        for match in re.finditer(r"://[^/:@\s]*:(\$\{[^}]*\}|[^@\s]+)@", node):
            yield f"{key} URL", match.group(1)


def test_the_compose_file_holds_no_literal_secret():
    found = list(credentials_in(load_compose()))
    # The scan sees the credentials that are there: Redis' password in three places, Flower's.
    assert len(found) >= 4, found
    for where, value in found:
        # Only an interpolation of a required variable, never a literal value or a default.
        assert re.fullmatch(r"\$\{\w+:\?[^}]*\}", value), f"{where}: literal secret {value!r}"
    operators = referenced_variables()
    assert operators["REDIS_PASSWORD"] == ":?"
    assert operators["FLOWER_BASIC_AUTH"] == ":?"


def test_env_example_lists_every_variable_and_no_secret():
    example = env_example()
    used = set(referenced_variables())
    assert used - set(example) == set(), "add these to .env.example"
    assert set(example) - used == set(), "documented in .env.example but unused by compose"
    assert example["REDIS_PASSWORD"] == ""
    assert example["FLOWER_BASIC_AUTH"] == ""
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


def test_settings_blocks_match_workers_settings():
    stale = stale_files()
    assert not stale, f"run `python -m ops.settings_docs`: stale {[p.name for p in stale]}"
    # Every JOBQ_* variable compose passes is a real setting (a typo would be silently ignored:
    # Settings ignores unknown variables), and the defaults it passes are the code's defaults.
    environment = resolved_compose()["services"]["worker-cpu"]["environment"]
    passed_settings = compose_settings()
    passed = {key for key in environment if key.startswith("JOBQ_")}
    assert passed == {doc.env for doc in passed_settings}
    with_compose_defaults = Settings(**{doc.field: environment[doc.env] for doc in passed_settings})
    # Settings compose does not pass (COMPOSE_OWNED) come from this process's environment.
    assert with_compose_defaults.model_dump(
        exclude=set(COMPOSE_OWNED)
    ) == Settings.model_construct().model_dump(exclude=set(COMPOSE_OWNED))


# --- 4. the image ---------------------------------------------------------------------------------


def test_dockerfile_installs_the_project_and_runs_as_a_user_in_exec_form():
    instructions = dockerfile_instructions()
    keywords = [keyword for keyword, _ in instructions]

    (base,) = [args for keyword, args in instructions if keyword == "FROM"]
    assert base.startswith("python:3.11-slim")
    installs = [i for i, (k, a) in enumerate(instructions) if k == "RUN" and "pip install ." in a]
    assert installs, "the image must `pip install .` the project"
    assert not re.search(r"pip install \.\[", instructions[installs[0]][1]), "no extras"
    users = [i for i, (k, a) in enumerate(instructions) if k == "USER"]
    assert users
    assert users[-1] > installs[0]
    assert instructions[users[-1]][1] not in ("root", "0")
    for keyword in ("CMD", "ENTRYPOINT"):
        for args in (a for k, a in instructions if k == keyword):
            assert isinstance(json.loads(args), list), f"{keyword} must be exec form: {args}"
    assert "CMD" in keywords
    assert dict(instructions).get("STOPSIGNAL", "SIGTERM") == "SIGTERM"


def test_build_context_holds_the_project_and_no_secret():
    copied = []
    for keyword, args in dockerfile_instructions():
        if keyword == "COPY" and "--from" not in args:
            copied += [source.strip("./") for source in shlex.split(args)[:-1]]
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: missing from the repository"
        assert in_build_context(source), f"COPY {source}: excluded by .dockerignore"
    # What pip needs to build the project is copied: pyproject, its readme, every package.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = {"pyproject.toml", project["project"]["readme"]}
    include = project["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = find_packages(str(ROOT), include=include)
    for package in packages:
        top = package.split(".")[0]
        assert top in copied, f"package {package} is not copied into the image"
        for module in (ROOT / package.replace(".", "/")).glob("*.py"):
            assert in_build_context(str(module.relative_to(ROOT))), module
    assert needed <= set(copied)
    for private in (".env", ".git/config", ".venv/bin/python", ".jobq/redis/dump.rdb"):
        assert not in_build_context(private), private
    assert not in_build_context("workers/__pycache__/app.cpython-311.pyc")


# --- 5. the commands compose runs, for real ----------------------------------------------------


def compose_env_for_tests(service: str) -> dict[str, str]:
    """The service's environment from compose, pointed at the test Redis, plus PATH."""
    environment = resolved_compose()["services"][service]["environment"]
    environment["REDIS_URL"] = os.environ["REDIS_URL"]
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, **environment, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}


def as_local_argv(command: list[str]) -> list[str]:
    """A compose ``jobq ...`` command run with this interpreter (the tests' virtualenv)."""
    assert command[0] == "jobq"
    return jobq_argv(*command[1:])


@pytest.mark.integration
@pytest.mark.parametrize(("service", "pool"), [("worker-io", "gevent"), ("worker-cpu", "prefork")])
def test_worker_commands_choose_the_pool_on_the_command_line(service, pool):
    command = resolved_compose()["services"][service]["command"]

    result = subprocess.run(
        [*as_local_argv(command), "--dry-run"],
        env=compose_env_for_tests(service),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    argv = shlex.split(result.stdout.strip().splitlines()[-1])
    assert argv[argv.index("-P") + 1] == pool  # gevent patches only when -P is on argv
    assert argv[argv.index("-Q") + 1] == WORKERS[service]
    assert argv[argv.index("-n") + 1] == f"{WORKERS[service]}@%h"  # unique per replica
    if pool == "prefork":
        # Sized from the container's CPU quota, which compose sets per replica.
        assert argv[argv.index("-c") + 1] == "auto"
        assert float(resolved_compose()["services"][service]["cpus"]) > 0


def run_healthcheck(service: str, env: dict[str, str], timeout_s: str | None = None) -> int:
    kind, script = resolved_compose()["services"][service]["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    if timeout_s:
        script = re.sub(r"--timeout \S+", f"--timeout {timeout_s}", script)
    return subprocess.run(
        ["/bin/sh", "-c", script], env=env, capture_output=True, timeout=90
    ).returncode


@pytest.fixture(scope="module")
def compose_workers(redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Both workers, started with exactly compose's commands and environments, once healthy.

    Module-scoped to start them once for the health check and demo tests; those tests must not
    use ``redis_client`` (its FLUSHALL would pull the queues' bindings from under the workers).
    """
    redis_server.client().flushall()
    log_dir = tmp_path_factory.mktemp("compose-workers")
    started = {}
    for service in WORKERS:
        command = resolved_compose()["services"][service]["command"]
        env = compose_env_for_tests(service)
        started[service] = spawn(service, as_local_argv(command), env=env, log_dir=log_dir)
    try:
        for service, worker in started.items():
            # In a container HOSTNAME is its hostname, which %h in the node name expands to.
            env = {**compose_env_for_tests(service), "HOSTNAME": socket.gethostname()}
            wait_until(
                lambda s=service, w=worker, e=env: run_healthcheck(s, e) == 0 or not w.alive(),
                timeout=90,
                message=f"{service} never became healthy:\n{worker.log_tail()}",
            )
            assert worker.alive(), worker.log_tail()
        yield started
    finally:
        for worker in started.values():
            worker.stop(timeout=30)
            worker.kill()


@pytest.mark.integration
@pytest.mark.parametrize("service", sorted(WORKERS))
def test_worker_healthcheck_passes_for_its_replica_and_fails_for_another(service, compose_workers):
    env = {**compose_env_for_tests(service), "HOSTNAME": socket.gethostname()}

    assert run_healthcheck(service, env) == 0
    # A replica whose worker is not there is unhealthy (short reply timeout: nobody answers).
    other = {**env, "HOSTNAME": "not-this-replica"}
    assert run_healthcheck(service, other, timeout_s="1") != 0


@pytest.mark.integration
def test_flower_command_refuses_to_run_without_auth():
    command = resolved_compose()["services"]["flower"]["command"]
    env = {**compose_env_for_tests("flower"), "FLOWER_BASIC_AUTH": ""}
    env.pop("FLOWER_AUTH", None)

    result = subprocess.run(
        as_local_argv(command), env=env, capture_output=True, text=True, timeout=60, check=False
    )

    assert result.returncode == 2
    assert "refusing to start Flower without authentication" in result.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(port: int, path: str) -> bytes | None:
    """GET a path on 127.0.0.1, or None while nothing answers there yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.read()
    except OSError:
        return None


def on_loopback(command: list[str], port: int) -> list[str]:
    """Compose's command, listening on 127.0.0.1:port here: tests talk to 127.0.0.0/8 only."""
    argv = as_local_argv(command)
    argv[argv.index("--address" if "--address" in argv else "--host") + 1] = "127.0.0.1"
    argv[argv.index("--port") + 1] = str(port)
    return argv


@pytest.mark.integration
def test_exporter_command_serves_metrics_from_redis(redis_server):
    command = resolved_compose()["services"]["exporter"]["command"]
    port = free_port()
    exporter = spawn("exporter", on_loopback(command, port), env=compose_env_for_tests("exporter"))
    try:
        body = wait_until(
            lambda: http_get(port, "/metrics"),
            timeout=30,
            message=f"exporter did not answer:\n{exporter.log_tail()}",
        )
        assert re.search(rb"^jobq_redis_up 1\.0$", body, re.MULTILINE), body[:2000]
    finally:
        exporter.stop(timeout=10)
        exporter.kill()


@pytest.mark.integration
def test_demo_site_serves_pages_and_stops_cleanly_on_term(tmp_path):
    command = resolved_compose()["services"]["demo-site"]["command"]
    port = free_port()
    site = spawn("demo-site", on_loopback(command, port), log_dir=tmp_path)
    try:
        body = wait_until(
            lambda: http_get(port, "/page/3"),
            timeout=30,
            message=f"demo site did not answer:\n{site.log_tail()}",
        )
        assert len(body.split()) >= 1000  # a page of prose for analyze_text

        site.signal(signal.SIGTERM)  # what docker stop sends
        assert site.process.wait(timeout=30) == 0
    finally:
        site.kill()


@pytest.mark.integration
def test_demo_producer_runs_end_to_end_against_the_compose_workers(compose_workers, tmp_path):
    services = resolved_compose()["services"]
    port = free_port()
    site = spawn("demo-site", on_loopback(services["demo-site"]["command"], port), log_dir=tmp_path)
    try:
        wait_until(lambda: http_get(port, "/status/200") is not None, timeout=30)
        kind, flag, script = services["demo"]["command"]
        # The demo's own script, with the site's address on this machine and a small batch.
        script = script.replace("demo-site:8000", f"127.0.0.1:{port}")
        env = {**compose_env_for_tests("demo"), "DEMO_JOBS": "3"}

        result = subprocess.run(
            [kind, flag, script], env=env, capture_output=True, text=True, timeout=180
        )

        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        for job in ("fetch_and_analyze", "io_wait", "cpu_spin"):
            assert f"submitted 3 {job} job(s); refused 0 line(s); 0 failed" in result.stderr
    finally:
        site.kill()


def test_demo_producer_submits_valid_jobs():
    script = resolved_compose()["services"]["demo"]["command"][-1]
    # Each line is: seq ... | sed 's|.*|<json with & for the number>|' | jobq submit JOB --file -
    lines = re.findall(r"sed 's\|\.\*\|(.+?)\|'\s*\\?\s*\|\s*jobq submit (\w+) --file -", script)
    assert len(lines) >= 3, script
    kinds = set()
    for template, job in lines:
        spec = get_job(job)
        arguments = json.loads(template.replace("&", "7"))
        try:
            spec.schema.validate(arguments)
        except InvalidArguments as exc:
            pytest.fail(f"demo line for {job} would be refused: {exc}")
        kinds.add(spec.kind)
    assert {"io", "cpu"} <= kinds  # the demo exercises both pools
