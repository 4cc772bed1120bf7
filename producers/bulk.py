"""Reading bulk submissions: one JSON object of arguments per line (JSON Lines).

Each line is parsed and validated on its own, so a bad line is reported with its number and the
good lines can still be submitted. Blank lines and lines starting with ``#`` are skipped.

Example::

    >>> lines = ['{"ms": 5}', 'oops', '{"ms": "x"}']
    >>> [(item.line, item.error is None) for item in read_jobs(get_job("io_wait"), lines)]
    [(1, True), (2, False), (3, False)]
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from workers.registry import JobSpec
from workers.registry.schema import InvalidArguments


@dataclass(frozen=True)
class BulkItem:
    """One line of a bulk file: its validated arguments, or why it was refused."""

    line: int
    arguments: dict[str, Any] | None = None
    error: str | None = None


def read_jobs(spec: JobSpec, lines: Iterable[str]) -> Iterator[BulkItem]:
    """Parse and validate each line; yield one BulkItem per non-blank line."""
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            yield BulkItem(line=number, error=f"not valid JSON ({exc.msg}, column {exc.colno})")
            continue
        if not isinstance(value, dict):
            yield BulkItem(line=number, error="expected a JSON object of arguments")
            continue
        try:
            yield BulkItem(line=number, arguments=spec.schema.validate(value))
        except InvalidArguments as exc:
            yield BulkItem(line=number, error="; ".join(exc.problems))
