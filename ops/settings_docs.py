"""Write every document generated from ``workers/settings.py``, or check that none is stale.

Each setting is documented once, on its ``Settings`` field. From those fields this command
writes docs/configuration.md (the reference, :mod:`ops.configuration_page`) and the settings
blocks of docker-compose.yml and .env.example (:mod:`ops.compose_env`). Run it after adding or
changing a setting; ``tests/test_settings_docs.py`` fails until you do.

Example::

    $ python -m ops.settings_docs            # rewrite what is stale, naming each file
    $ python -m ops.settings_docs --check    # exit 1 and name the stale files
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ops.compose_env import (
    COMMAND,
    compose_block,
    compose_settings,
    env_example_block,
    replace_block,
)
from ops.configuration_page import configuration_page
from ops.settings_reference import setting_docs

ROOT = Path(__file__).resolve().parent.parent
CONFIGURATION_PAGE = Path("docs") / "configuration.md"


def generated_files(root: Path = ROOT) -> dict[Path, str]:
    """What each generated file should contain, by path."""
    passed = compose_settings()
    compose, example = root / "docker-compose.yml", root / ".env.example"
    return {
        root / CONFIGURATION_PAGE: configuration_page(setting_docs()),
        compose: replace_block(compose.read_text(), compose_block(passed), path=compose),
        example: replace_block(example.read_text(), env_example_block(passed), path=example),
    }


def stale_files(root: Path = ROOT) -> list[Path]:
    """The generated files whose content differs from what ``workers/settings.py`` says."""
    return [
        path
        for path, text in generated_files(root).items()
        if not path.exists() or path.read_text() != text
    ]


@click.command()
@click.option("--check", is_flag=True, help="Only report stale files (exit 1 if any).")
def main(check: bool) -> None:
    """Regenerate docs/configuration.md and the settings blocks of compose and .env.example."""
    if check:
        stale = stale_files(ROOT)
        for path in stale:
            click.echo(f"stale: {path.relative_to(ROOT)} (run: {COMMAND})", err=True)
        sys.exit(1 if stale else 0)
    for path, text in generated_files(ROOT).items():
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            click.echo(f"updated {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
