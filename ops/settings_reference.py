"""Each jobq setting as the documentation presents it, read from the fields of ``Settings``.

``workers/settings.py`` is the one source: each field's description, section, default and
constraints. Constraints are taken from pydantic's JSON schema of the model (``minimum``,
``pattern`` …), so what the page says is what validation enforces. docs/configuration.md,
.env.example and docker-compose.yml are rendered from these records
(``ops/configuration_page.py``, ``ops/compose_env.py``); ``python -m ops.settings_docs`` writes
them.

Example::

    >>> doc = setting_docs()[0]
    >>> doc.env, doc.kind, doc.default
    ('REDIS_URL', 'string', 'redis://127.0.0.1:6379/0')
    >>> next(d for d in setting_docs() if d.field == "io_concurrency").allowed
    '1 to 5000'
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from workers.settings import Section, Settings

BOOLEAN_VALUES = "`true` or `false` (`1`/`0`, `yes`/`no`, `on`/`off` too)"
# One alternative of a ``^(a|b)$`` pattern that is a plain word, shown as a value.
_LITERAL = re.compile(r"[\w.:-]+")
_ALTERNATIVES = re.compile(r"\^\((?P<body>[^()]*)\)\$")


@dataclass(frozen=True)
class SettingDoc:
    """One setting as documented: where it comes from, what it accepts, what it does."""

    field: str  # the Settings attribute
    env: str  # the environment variable
    section: Section
    kind: str  # the JSON schema's type: integer, number, string or boolean
    default: str  # as the environment spells it
    allowed: str  # the accepted values in words; "" when any value of its kind is
    description: str


def env_name(field: str) -> str:
    """The environment variable of a ``Settings`` field: its alias, else ``JOBQ_`` + name.

    >>> env_name("redis_url"), env_name("io_concurrency")
    ('REDIS_URL', 'JOBQ_IO_CONCURRENCY')
    """
    alias = Settings.model_fields[field].validation_alias
    prefix = Settings.model_config.get("env_prefix", "")
    return alias if isinstance(alias, str) else f"{prefix}{field}".upper()


def env_text(value: object) -> str:
    """A default as the environment spells it: ``60.0`` -> ``60``, ``True`` -> ``true``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def allowed_values(schema: dict[str, Any]) -> str:
    """The values a field's JSON schema accepts, in words ("" when any of its type will do).

    >>> allowed_values({"type": "integer", "minimum": 1, "maximum": 64})
    '1 to 64'
    >>> allowed_values({"type": "number", "exclusiveMinimum": 0})
    '> 0'
    >>> allowed_values({"type": "string", "pattern": "^(auto|[1-9][0-9]*)$"})
    '`auto` or a match of `[1-9][0-9]*`'
    """
    if schema.get("type") == "boolean":
        return BOOLEAN_VALUES
    if "pattern" in schema:
        return _pattern_in_words(schema["pattern"])
    if "minimum" in schema and "maximum" in schema:
        return f"{env_text(schema['minimum'])} to {env_text(schema['maximum'])}"
    low = _bound(schema, "minimum", "exclusiveMinimum", "≥", ">")
    high = _bound(schema, "maximum", "exclusiveMaximum", "≤", "<")
    return ", ".join(part for part in (low, high) if part)


def _bound(schema: dict[str, Any], inclusive: str, exclusive: str, le: str, lt: str) -> str:
    if inclusive in schema:
        return f"{le} {env_text(schema[inclusive])}"
    if exclusive in schema:
        return f"{lt} {env_text(schema[exclusive])}"
    return ""


def _pattern_in_words(pattern: str) -> str:
    match = _ALTERNATIVES.fullmatch(pattern)
    if not match:
        return f"a match of `{pattern}`"
    words = [
        f"`{alt}`" if _LITERAL.fullmatch(alt) else f"a match of `{alt}`"
        for alt in match.group("body").split("|")
    ]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def setting_docs() -> list[SettingDoc]:
    """Every setting, in the order ``Settings`` declares them.

    Raises ``ValueError`` for a field without a description or a section: each one must say
    what it does, and where the reference lists it.
    """
    properties = Settings.model_json_schema(by_alias=False)["properties"]
    docs = []
    for field in Settings.model_fields:
        schema = properties[field]
        description = (schema.get("description") or "").strip()
        if not description or "section" not in schema:
            raise ValueError(f"Settings.{field} needs Field(description=..., json_schema_extra=")
        docs.append(
            SettingDoc(
                field=field,
                env=env_name(field),
                section=Section(schema["section"]),
                kind=schema["type"],
                default=env_text(schema.get("default", "")),
                allowed=allowed_values(schema),
                description=description,
            )
        )
    return docs


def by_section(docs: Iterable[SettingDoc]) -> dict[Section, list[SettingDoc]]:
    """``docs`` grouped by section, sections in :class:`Section` order, empty ones left out."""
    grouped: dict[Section, list[SettingDoc]] = {section: [] for section in Section}
    for doc in docs:
        grouped[doc.section].append(doc)
    return {section: items for section, items in grouped.items() if items}
