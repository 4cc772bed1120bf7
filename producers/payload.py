"""The argument size limit: oversized arguments are refused at submit, before anything is sent.

A job's arguments travel inside its message, through Redis and into a worker's memory, and
are kept in the dead letters if the job fails. One 50 MB argument can exhaust Redis's
``maxmemory`` for every other producer, so the producer refuses it: put big inputs somewhere
else (a URL, an object store) and pass a reference. The limit is ``JOBQ_MAX_ARGUMENT_BYTES``
(1 MiB by default), measured on the JSON encoding that is actually sent.

Example::

    >>> check_size("analyze_text", {"text": "x" * 2_000_000})
    Traceback (most recent call last):
    producers.payload.PayloadTooLarge: invalid arguments for analyze_text: ...
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from typing import Any

from producers.bulk import BulkItem
from workers.registry.schema import InvalidArguments
from workers.settings import get_settings


class PayloadTooLarge(InvalidArguments):
    """The JSON-encoded arguments exceed ``JOBQ_MAX_ARGUMENT_BYTES``."""


def argument_bytes(arguments: Mapping[str, Any]) -> int:
    """Size of the arguments as JSON (what the message body carries), in bytes."""
    return len(json.dumps(arguments, separators=(",", ":"), default=str).encode())


def check_size(job: str, arguments: Mapping[str, Any], *, where: str = "") -> None:
    """Raise :class:`PayloadTooLarge` if ``arguments`` are over the limit."""
    limit = get_settings().max_argument_bytes
    size = argument_bytes(arguments)
    if size > limit:
        raise PayloadTooLarge(
            job,
            [
                f"{where}arguments are {size:,} bytes as JSON; the limit is {limit:,} "
                "(JOBQ_MAX_ARGUMENT_BYTES): pass a reference (a URL, a file name) instead"
            ],
        )


def refuse_oversized(job: str, items: Iterable[BulkItem]) -> Iterator[BulkItem]:
    """Bulk files: turn a line whose arguments are over the limit into a refused line."""
    for item in items:
        if item.error is None and item.arguments is not None:
            try:
                check_size(job, item.arguments)
            except PayloadTooLarge as exc:
                item = replace(item, arguments=None, error="; ".join(exc.problems))
        yield item
