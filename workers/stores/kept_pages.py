"""Pages a pipeline step keeps in Redis for the next one: ``jobq:body:<job id>``, for a while.

They live ``JOBQ_BODY_TTL`` seconds (600): long enough for the next step to run after a
backlog, short enough that a flood of pipelines cannot keep a page each for long.

``fetch_url(keep_body=true)`` keeps the page it fetched; ``analyze_text`` reads it back by the
key it was handed. Only keys under :data:`~workers.keys.BODY_PREFIX` are read: a key named in a
message may come from any Celery client, and any other key (a password, another job's result)
must not come back in a job's result.

Example::

    >>> check_page_key("jobq:body:6f1c0b7e")
    'jobq:body:6f1c0b7e'
    >>> check_page_key("jobq:job:6f1c0b7e")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    NotAPageKey: 'jobq:job:6f1c0b7e' is not a kept page's key
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field

from workers.keys import BODY_PREFIX
from workers.settings import get_settings
from workers.stores.client import get_redis

# A job id (a UUID from jobq's producers; any other client may choose its own) or a sha256.
_KEY_PATTERN = rf"^{re.escape(BODY_PREFIX)}[^\s]{{1,200}}$"
PageKey = Annotated[str, Field(pattern=_KEY_PATTERN)]


class NotAPageKey(ValueError):
    """A key that is not one under which a job kept a page."""


def keep_page(name: str, text: str) -> str:
    """Keep ``text`` for ``JOBQ_BODY_TTL`` seconds under the key for ``name`` (a job id).

    Returns the key.
    """
    key = BODY_PREFIX + name
    check_page_key(key)
    get_redis().set(key, text, ex=get_settings().body_ttl)
    return key


def check_page_key(key: str) -> str:
    """``key`` if it is a kept page's key, else :class:`NotAPageKey`."""
    if not isinstance(key, str) or not re.match(_KEY_PATTERN, key):
        raise NotAPageKey(f"{key!r} is not a kept page's key ({BODY_PREFIX}<job id>)")
    return key


def read_page(key: str) -> str | None:
    """The page kept under ``key`` (None once expired); refuses any key outside jobq:body:."""
    return get_redis().get(check_page_key(key))  # type: ignore[no-any-return]
