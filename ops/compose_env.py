"""Keep docker-compose.yml and .env.example in step with ``workers/settings.py``.

Every jobq setting must reach the containers (compose passes each one explicitly, with the
code's default) and be documented in ``.env.example``. Writing those two lists by hand drifts
as soon as a setting is added, so both files hold a generated block between marker lines,
built here from :class:`workers.settings.Settings`: its fields, defaults and the comments above
them. ``tests/test_compose.py`` fails when a block is stale.

Example::

    $ python -m ops.compose_env            # rewrite the blocks after changing settings.py
    $ python -m ops.compose_env --check    # exit 1 and name the stale files
"""

from __future__ import annotations

import inspect
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from workers.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
BEGIN = "BEGIN jobq settings"
END = "END jobq settings"
BEGIN_LINE = f"# {BEGIN}: generated from workers/settings.py by `python -m ops.compose_env`"
END_LINE = f"# {END}"
# Settings not passed through from .env: redis_url is built by compose from the password;
# fault_jobs must never be on in a deployment; in compose, WORKER_IO_REPLICAS does what
# io_processes does for `jobq up`.
COMPOSE_OWNED = {"redis_url", "fault_jobs", "io_processes"}
_FIELD_LINE = re.compile(r"^    (\w+)\s*:[^=]+=")


@dataclass(frozen=True)
class SettingVar:
    """One setting as an environment variable: name, default as text, and its comment."""

    name: str
    default: str
    # The comment above it in settings.py; None: it shares the comment of the setting above.
    comment: tuple[str, ...] | None
    # The Settings field it fills; None for a variable read outside Settings.
    field: str | None = None


# Variables jobq reads from the environment outside Settings (none: Settings reads them all).
EXTRA_VARS: tuple[SettingVar, ...] = ()


def env_text(value: object) -> str:
    """A default as the environment spells it: ``60.0`` -> ``60``, ``True`` -> ``true``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _comments_above_fields() -> dict[str, tuple[str, ...] | None]:
    # The comment block right above a field documents it and the fields right below it that
    # have no comment of their own, exactly as settings.py reads. None marks a field that
    # continues the group above it; () one that starts a new group without a comment.
    comments: dict[str, tuple[str, ...] | None] = {}
    block: list[str] = []
    after_field = False
    for line in inspect.getsource(Settings).splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            text = stripped.lstrip("#").strip()
            if not text.startswith("---"):  # section rulers carry no meaning of their own
                block.append(text)
            after_field = False
            continue
        match = _FIELD_LINE.match(line)
        if match:
            comments[match.group(1)] = tuple(block) if block or not after_field else None
        after_field = bool(match) or (after_field and bool(stripped))
        block = []
    return comments


def setting_vars() -> list[SettingVar]:
    """Every setting compose passes through, in the order settings.py declares them."""
    prefix = Settings.model_config.get("env_prefix", "")
    comments = _comments_above_fields()
    result = []
    for name, field in Settings.model_fields.items():
        if name in COMPOSE_OWNED:
            continue
        alias = field.validation_alias if isinstance(field.validation_alias, str) else None
        env_name = alias or f"{prefix}{name}".upper()
        default = env_text(field.default)
        result.append(SettingVar(env_name, default, comments.get(name, ()), field=name))
    return [*result, *EXTRA_VARS]


def compose_block(variables: list[SettingVar]) -> list[str]:
    """Lines of the ``x-jobq-environment`` mapping (indentation added by the caller)."""
    lines = [BEGIN_LINE]
    for var in variables:
        value = f"${{{var.name}:-{var.default}}}".replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'{var.name}: "{value}"')
    return [*lines, END_LINE]


def env_example_block(variables: list[SettingVar]) -> list[str]:
    """Lines for ``.env.example``: each setting commented out at its default, with its comment."""
    lines = [
        BEGIN_LINE,
        "# Optional. Each line shows the default; uncomment and change it to override.",
    ]
    for var in variables:
        if var.comment is not None:
            lines += ["#", *(f"# {text}" for text in var.comment)]
        lines.append(f"# {var.name}={var.default}")
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


def generated_files(root: Path = ROOT) -> dict[Path, str]:
    """What docker-compose.yml and .env.example should contain, by path."""
    variables = setting_vars()
    compose, example = root / "docker-compose.yml", root / ".env.example"
    return {
        compose: replace_block(compose.read_text(), compose_block(variables), path=compose),
        example: replace_block(example.read_text(), env_example_block(variables), path=example),
    }


def stale_files(root: Path = ROOT) -> list[Path]:
    """The files whose generated block differs from settings.py."""
    return [path for path, text in generated_files(root).items() if path.read_text() != text]


@click.command()
@click.option("--check", is_flag=True, help="Only report stale files (exit 1 if any).")
def main(check: bool) -> None:
    """Regenerate the settings blocks of docker-compose.yml and .env.example."""
    if check:
        stale = stale_files()
        for path in stale:
            click.echo(f"stale: {path.name} (run: python -m ops.compose_env)", err=True)
        sys.exit(1 if stale else 0)
    for path, text in generated_files().items():
        if path.read_text() != text:
            path.write_text(text)
            click.echo(f"updated {path.name}")


if __name__ == "__main__":
    main()
