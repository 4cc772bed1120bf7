"""Pure logic: argument schemas, key=value parsing, bulk lines, pool command lines."""

from __future__ import annotations

import click
import pytest

from producers.bulk import read_jobs
from producers.cli import parse_assignments
from workers.catalog import get_job
from workers.pools import POOLS, worker_argv
from workers.registry import UnknownJob
from workers.registry.schema import InvalidArguments
from workers.settings import Settings, redact_url


def test_arguments_are_coerced_to_declared_types():
    assert get_job("io_wait").schema.validate({"ms": "250"}) == {"ms": 250, "probe_name": None}


def test_unknown_and_missing_arguments_are_named():
    with pytest.raises(InvalidArguments) as caught:
        get_job("fetch_url").schema.validate({"timeout": 0, "colour": "red"})
    problems = caught.value.problems
    assert "url: required argument is missing" in problems
    assert "colour: unknown argument" in problems
    assert any(p.startswith("timeout:") for p in problems)


def test_the_pipeline_step_input_is_not_a_submittable_argument():
    schema = get_job("analyze_text").schema
    assert "fetched" not in schema.parameters()  # not offered in help texts
    # …and refused from a producer: only the step before may hand analyze_text a page.
    with pytest.raises(InvalidArguments) as caught:
        schema.validate({"text": "x", "fetched": {"body_key": "jobq:body:someone-else"}})
    assert caught.value.problems == ["fetched: unknown argument"]
    assert schema.validate({"text": "x"}) == {"text": "x", "text_key": None, "top": 10}


def test_unknown_job_lists_the_known_ones():
    with pytest.raises(UnknownJob, match=r"known jobs: .*fetch_url"):
        get_job("fetch_ur1")


def test_key_value_and_json_assignments():
    assert parse_assignments(("url=http://h/?a=b", "n:=3", "tags:=[1]")) == {
        "url": "http://h/?a=b",
        "n": 3,
        "tags": [1],
    }
    with pytest.raises(click.BadParameter):
        parse_assignments(("n:={oops",))
    with pytest.raises(click.BadParameter):
        parse_assignments(("bad-name=1",))


def test_bulk_lines_are_numbered_and_checked_one_by_one():
    lines = ['{"ms": 1}', "", "not json", "[1, 2]", '{"ms": -5}', '{"ms": 2}']
    items = list(read_jobs(get_job("io_wait"), lines))
    assert [(i.line, i.error is None) for i in items] == [
        (1, True),
        (3, False),
        (4, False),
        (5, False),
        (6, True),
    ]
    assert "not valid JSON" in (items[1].error or "")
    assert "JSON object" in (items[2].error or "")
    assert "greater than or equal to 0" in (items[3].error or "")


def test_gevent_is_chosen_on_the_command_line_and_prefork_gets_its_limits():
    settings = Settings(REDIS_URL="redis://127.0.0.1:1/0")
    io = worker_argv(POOLS["io"], settings)
    cpu = worker_argv(POOLS["cpu"], settings)
    # Celery monkey-patches for gevent only when it sees -P gevent in argv, not from config.
    assert io[io.index("-P") + 1] == "gevent"
    assert io[io.index("-Q") + 1] == "io"
    assert "--soft-time-limit" not in io  # gevent has no soft limit
    assert cpu[cpu.index("-P") + 1] == "prefork"
    assert cpu[cpu.index("-c") + 1] == "auto"
    assert cpu[cpu.index("--max-tasks-per-child") + 1] == "500"
    assert io[io.index("--prefetch-multiplier") + 1] == "1"


def test_redis_passwords_are_redacted():
    assert redact_url("redis://:pw@h:1/0") == "redis://:***@h:1/0"
    assert redact_url("redis://user:pw@h:1/0") == "redis://user:***@h:1/0"
    assert redact_url("redis://h:1/0") == "redis://h:1/0"


def test_a_password_in_the_query_string_is_redacted_too():
    # redis-py takes the password from ?password= as well as from user:password@.
    assert redact_url("redis://h:1/0?password=pw") == "redis://h:1/0?password=***"
    redacted = redact_url("rediss://u@h:1/0?ssl_cert_reqs=required&Password=pw&db=2")
    assert "pw" not in redacted.replace("/0", "")
    assert redacted == "rediss://u@h:1/0?ssl_cert_reqs=required&Password=***&db=2"
    assert redact_url("redis://:a@h/0?password=b") == "redis://:***@h/0?password=***"


def test_fetch_url_leaves_its_defaults_to_the_worker():
    # JOBQ_FETCH_TIMEOUT / JOBQ_FETCH_MAX_BYTES are the running worker's, not the submitter's:
    # the message carries no default for them.
    from producers import validate

    _, checked = validate("fetch_url", {"url": "http://127.0.0.1/"})
    assert checked["timeout"] is None
    assert checked["max_bytes"] is None
    with pytest.raises(InvalidArguments, match="timeout"):
        validate("fetch_url", {"url": "http://127.0.0.1/", "timeout": 301})
