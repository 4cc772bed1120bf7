"""Text from a message made fit for one log line: control characters escaped, length bounded.

A value a client chose (a correlation id, a routing key, a content type in an error message)
must not start a log line of its own or fill the log. Workers refuse such values where they
can (workers/broker/headers.py); whatever is printed anyway goes through :func:`one_line`.

Example::

    >>> one_line("order-17"), one_line("a\\nforged")
    ('order-17', 'a\\\\nforged')
"""

from __future__ import annotations

# Long enough for any id jobq accepts and a one-line error message.
MAX_LENGTH = 200


def one_line(value: str, limit: int = MAX_LENGTH) -> str:
    """``value`` with control characters escaped, cut to ``limit`` characters (ending in …)."""
    if len(value) <= limit and value.isprintable():
        return value
    if not value.isprintable():
        value = value.encode("unicode_escape").decode("ascii")
    return value if len(value) <= limit else value[: limit - 1] + "…"
