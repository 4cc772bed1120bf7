"""The README's promises stay true: its first commands, and one row per setting."""

from __future__ import annotations

from pathlib import Path

from workers.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def env_name(field: str) -> str:
    alias = Settings.model_fields[field].validation_alias
    return alias if isinstance(alias, str) else f"JOBQ_{field.upper()}"


def test_every_setting_has_a_row_in_the_configuration_table():
    table = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    documented = " ".join(row.split(" | ")[0] for row in rows)
    missing = [env_name(f) for f in Settings.model_fields if f"`{env_name(f)}`" not in documented]
    assert not missing, f"README configuration table lacks: {missing}"


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
