"""The README and docs/ stay true: first commands, links, named commands, size, no outside refs."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from ops.cli import main
from workers.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# The README is a front door: what jobq is, a tour, and links. Reference belongs in docs/.
README_MAX_BYTES = 12_000

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"`[^`\n]+`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
# "jobq" as a command: not part of a path such as .jobq/env, a key or a name like jobq_pause,
# nor the package in Python's "from jobq import submit".
JOBQ = re.compile(r"(?<![\w.:@=$-])(?<!from )jobq(?=[ \t]+\S)")
# Where a command written in a doc ends: a comment, a shell operator, or the end of a code span.
COMMAND_END = re.compile(r"\s#|`|;|&&|\|\||\s\|\s|\)|,\s")


def split_fences(text: str) -> tuple[list[str], list[str]]:
    """(prose lines, lines inside fenced code blocks)."""
    prose: list[str] = []
    code: list[str] = []
    inside = False
    for line in text.splitlines():
        if FENCE.match(line):
            inside = not inside
            continue
        (code if inside else prose).append(line)
    return prose, code


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    prose, _ = split_fences(path.read_text())
    seen: dict[str, int] = {}
    found = set()
    for line in prose:
        match = re.match(r"#{1,6}\s+(.*)", line)
        if match:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


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


def test_the_readme_stays_a_front_door():
    size = len(README.encode())
    assert size <= README_MAX_BYTES, (
        f"README.md is {size} bytes (at most {README_MAX_BYTES}): move reference to docs/"
    )


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(doc: Path):
    prose, _ = split_fences(doc.read_text())
    text = INLINE_CODE.sub("", "\n".join(prose))
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: …
            continue
        path_part, _, anchor = target.partition("#")
        path = (doc.parent / path_part).resolve() if path_part else doc
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{target}: no heading with anchor #{anchor}")
    assert not broken, f"{doc.name}: {broken}"


def jobq_commands(text: str) -> Iterator[list[str]]:
    """The words after each ``jobq`` in fenced blocks and in inline code spans."""
    prose, code = split_fences(text)
    places = code + [span.strip("`") for span in INLINE_CODE.findall("\n".join(prose))]
    for place in places:
        for match in JOBQ.finditer(place):
            rest = place[match.end() :]
            end = COMMAND_END.search(rest)
            yield (rest[: end.start()] if end else rest).split()


def command_problems(command: click.Command, words: list[str], said: str) -> list[str]:
    """What in ``jobq <words>`` does not exist: a subcommand, or a flag of the command."""
    if isinstance(command, click.Group) and words and not words[0].startswith("-"):
        problems = []
        # "dead list|show" names two subcommands (written "list\|show" in a table cell).
        for name in re.split(r"\\?\|", words[0]):
            sub = command.get_command(click.Context(command), name)
            if sub is None:
                group = "jobq" if command is main else command.name
                problems.append(f"{said}: no command {name!r} in {group}")
            else:
                problems += command_problems(sub, words[1:], said)
        return problems
    flags = {"-h", "--help"}
    for param in command.params:
        flags.update(param.opts + param.secondary_opts)
    problems = []
    for word in words:
        if word == "--":  # the rest goes to celery
            break
        flag = word.split("=", 1)[0]
        if re.fullmatch(r"--?[a-z][\w-]*", flag) and flag not in flags:
            problems.append(f"{said}: {command.name} has no option {flag}")
    return problems


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_jobq_command_the_docs_name_exists(doc: Path):
    problems = []
    for words in jobq_commands(doc.read_text()):
        problems += command_problems(main, words, "jobq " + " ".join(words))
    assert not problems, f"{doc.name}: {problems}"


def test_the_command_finder_sees_commands_and_flags():
    text = (
        "```sh\njobq dead list|shw --limit 5   # note\n```\nRun `jobq up --demo --nope`.\n"
        "```python\nfrom jobq import submit\n```\n"
    )
    words = list(jobq_commands(text))
    assert words == [["dead", "list|shw", "--limit", "5"], ["up", "--demo", "--nope"]]
    problems = [p for w in words for p in command_problems(main, w, " ".join(w))]
    assert len(problems) == 2
    assert "no command 'shw'" in problems[0]
    assert "no option --nope" in problems[1]


# --- nothing points to documents outside the repository ----------------------------------------

SKIP_DIRS = {".git", ".venv", ".jobq", "__pycache__", ".pytest_cache", ".ruff_cache", "tests"}
OUTSIDE_NOTES = re.compile(r"shared notes|\.\./shared", re.IGNORECASE)


def repository_text_files() -> Iterator[tuple[str, str]]:
    """(path relative to the root, text) of every text file outside tests/ and tool folders."""
    for folder, dirs, files in os.walk(ROOT):
        here = Path(folder)
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        for name in files:
            data = (here / name).read_bytes()
            if b"\0" in data:
                continue
            try:
                yield str((here / name).relative_to(ROOT)), data.decode()
            except UnicodeDecodeError:
                continue


def test_no_file_points_to_notes_outside_the_repository():
    offenders = [path for path, text in repository_text_files() if OUTSIDE_NOTES.search(text)]
    assert not offenders, f"these mention shared notes outside the repository: {offenders}"


def test_docs_and_producer_side_code_name_no_issue_numbers():
    # A bare issue number points to a tracker a reader of the repository cannot see: state the
    # reason instead.
    # Links to other projects' issues (https://github.com/celery/celery/issues/…) are citations.
    bare_issue = re.compile(r"\bissues?\s*#?\d+|\u00a7", re.IGNORECASE)
    files = [*DOCS, ROOT / "CHANGELOG.md"]
    for folder in ("ops", "producers", "tests", "workers"):
        files += sorted((ROOT / folder).rglob("*.py"))
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in files
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if bare_issue.search(line)
    ]
    assert not offenders, f"bare issue references: {offenders}"


def env_name(field: str) -> str:
    alias = Settings.model_fields[field].validation_alias
    return alias if isinstance(alias, str) else f"JOBQ_{field.upper()}"


def test_every_setting_has_an_entry_in_the_configuration_reference():
    page = (ROOT / "docs" / "configuration.md").read_text()
    missing = [env_name(f) for f in Settings.model_fields if f"### `{env_name(f)}`" not in page]
    assert not missing, f"docs/configuration.md lacks: {missing} (run python -m ops.settings_docs)"
