"""Each setting is documented once, on its field, and every generated document follows it.

docs/configuration.md and the settings blocks of docker-compose.yml and .env.example are
rendered from ``workers/settings.py`` by ``python -m ops.settings_docs``; these tests fail when
one of them is stale, or when a field lacks what the reference needs.
"""

from __future__ import annotations

import re
import shutil

from click.testing import CliRunner

import ops.settings_docs
from ops.settings_docs import CONFIGURATION_PAGE, generated_files, main, stale_files
from ops.settings_reference import setting_docs
from workers.settings import Section, Settings


def test_no_generated_file_is_stale():
    stale = stale_files()
    assert not stale, f"run `python -m ops.settings_docs`: stale {[p.name for p in stale]}"


def test_check_exits_1_and_names_each_stale_file(tmp_path, monkeypatch):
    for path in generated_files():
        target = tmp_path / path.relative_to(ops.settings_docs.ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    page = tmp_path / CONFIGURATION_PAGE
    page.write_text(page.read_text().replace("JOBQ_FAST_PATHS", "JOBQ_SLOW_PATHS"))
    monkeypatch.setattr(ops.settings_docs, "ROOT", tmp_path)

    stale = CliRunner().invoke(main, ["--check"])
    assert stale.exit_code == 1
    assert "stale: docs/configuration.md" in stale.output
    assert "docker-compose.yml" not in stale.output

    assert CliRunner().invoke(main, []).exit_code == 0
    assert CliRunner().invoke(main, ["--check"]).exit_code == 0


def test_every_field_has_a_description_and_a_section():
    for name, field in Settings.model_fields.items():
        assert (field.description or "").strip(), f"Settings.{name} has no description"
        extra = field.json_schema_extra
        assert isinstance(extra, dict), f"Settings.{name}: json_schema_extra={{'section': ...}}"
        assert extra.get("section") in set(Section), f"Settings.{name}: unknown section"


def test_descriptions_stand_alone_and_name_real_settings():
    known = {doc.env for doc in setting_docs()}
    for doc in setting_docs():
        # Readers of the reference have no access to internal notes or the tracker.
        assert not re.search(r"shared notes|\u00a7|\bissue \d", doc.description), doc.env
        named = set(re.findall(r"\b(?:JOBQ_[A-Z0-9_]+|REDIS_URL)\b", doc.description))
        assert named <= known, f"{doc.env} names unknown settings {named - known}"


def test_the_reference_shows_type_default_and_accepted_values():
    page = (ops.settings_docs.ROOT / CONFIGURATION_PAGE).read_text()
    assert "python -m ops.settings_docs" in page.split("\n## ", 1)[0]
    entry = page.split("### `JOBQ_IO_CONCURRENCY`", 1)[1].split("\n### ", 1)[0]
    assert "Type: integer · Default: `100` · Accepts: 1 to 5000" in entry
    entry = page.split("### `JOBQ_LOG_FORMAT`", 1)[1].split("\n### ", 1)[0]
    assert "Default: `text` · Accepts: `text` or `json`" in entry
    sections = re.findall(r"^## (.+)$", page, flags=re.MULTILINE)
    assert sections == [s.value for s in Section if any(d.section == s for d in setting_docs())]
