"""The settings blocks of docker-compose.yml and .env.example, rendered from ``Settings``.

Every jobq setting must reach the containers (compose passes each one explicitly, with the
code's default) and be listed in ``.env.example`` with what it does. Both files hold a generated
block between marker lines, rendered here from :mod:`ops.settings_reference`;
``python -m ops.settings_docs`` writes them and ``tests/test_settings_docs.py`` fails when a
block is stale.

Example::

    >>> compose_block(compose_settings())[1]
    'JOBQ_REDIS_CA_FILE: "${JOBQ_REDIS_CA_FILE:-}"'
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import click

from ops.settings_reference import SettingDoc, by_section, setting_docs

COMMAND = "python -m ops.settings_docs"
BEGIN = "BEGIN jobq settings"
END = "END jobq settings"
BEGIN_LINE = f"# {BEGIN}: generated from workers/settings.py by `{COMMAND}`"
END_LINE = f"# {END}"
# Settings not passed through from .env: redis_url is built by compose from the password;
# fault_jobs must never be on in a deployment; in compose, WORKER_IO_REPLICAS does what
# io_processes does for `jobq up`.
COMPOSE_OWNED = frozenset({"redis_url", "fault_jobs", "io_processes"})
# .env.example's comment lines stay within the project's line length.
COMMENT_WIDTH = 98


def compose_settings() -> list[SettingDoc]:
    """Every setting compose passes through, in the order ``Settings`` declares them."""
    return [doc for doc in setting_docs() if doc.field not in COMPOSE_OWNED]


def compose_block(docs: list[SettingDoc]) -> list[str]:
    """Lines of the ``x-jobq-environment`` mapping (indentation added by the caller)."""
    lines = [BEGIN_LINE]
    for doc in docs:
        # The default is compose's ${VAR:-default}, quoted as a YAML double-quoted string.
        value = f"${{{doc.env}:-{doc.default}}}".replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'{doc.env}: "{value}"')
    return [*lines, END_LINE]


def env_example_block(docs: list[SettingDoc]) -> list[str]:
    """Lines for ``.env.example``: by section, each setting's description, then the setting
    commented out at its default."""
    lines = [
        BEGIN_LINE,
        "# Optional. Each line shows the default; uncomment and change it to override.",
        "# The reference of every setting: docs/configuration.md.",
    ]
    for section, items in by_section(docs).items():
        lines += ["#", f"# --- {section} ---"]
        for doc in items:
            text = f"{doc.description} Accepts: {doc.allowed}." if doc.allowed else doc.description
            wrapped = textwrap.wrap(text, COMMENT_WIDTH, break_on_hyphens=False)
            lines += ["#", *(f"# {text}" for text in wrapped), f"# {doc.env}={doc.default}"]
    return [*lines, END_LINE]


def replace_block(text: str, block: list[str], *, path: Path) -> str:
    """``text`` with the lines between the BEGIN and END markers replaced by ``block``.

    The block takes the indentation of the BEGIN marker line.
    """
    lines = text.splitlines(keepends=True)
    begin = [i for i, line in enumerate(lines) if BEGIN in line]
    end = [i for i, line in enumerate(lines) if END in line]
    if len(begin) != 1 or len(end) != 1 or end[0] < begin[0]:
        raise click.ClickException(f"{path}: expected one '{BEGIN}' line before one '{END}' line")
    indent = lines[begin[0]][: len(lines[begin[0]]) - len(lines[begin[0]].lstrip())]
    new = [f"{indent}{line}\n" for line in block]
    return "".join([*lines[: begin[0]], *new, *lines[end[0] + 1 :]])
