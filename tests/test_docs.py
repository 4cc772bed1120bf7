"""Docs stay true: the README's first commands, and one reference entry per setting."""

from __future__ import annotations

from pathlib import Path

from workers.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def env_name(field: str) -> str:
    alias = Settings.model_fields[field].validation_alias
    return alias if isinstance(alias, str) else f"JOBQ_{field.upper()}"


def test_every_setting_has_an_entry_in_the_configuration_reference():
    page = (ROOT / "docs" / "configuration.md").read_text()
    missing = [env_name(f) for f in Settings.model_fields if f"### `{env_name(f)}`" not in page]
    assert not missing, f"docs/configuration.md lacks: {missing} (run python -m ops.settings_docs)"


def test_the_readme_starts_with_the_run_and_test_commands():
    first_block = README.split("```")[1]
    assert "make run" in first_block
    assert "make test" in first_block
    makefile = (ROOT / "Makefile").read_text()
    assert "\nrun:" in makefile
    assert "jobq up --demo" in makefile
    assert "\ntest:" in makefile
    assert "pytest" in makefile


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    assert "redis-server" in ci
