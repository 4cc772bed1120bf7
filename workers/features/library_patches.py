"""Speed-ups that replace a library's global, installed in worker processes only.

Two functions of libraries jobq does not own cost a worker measurably on every job:

* **Celery's ``saferepr`` of results.** Celery renders every return value with its pure-Python
  ``saferepr`` for the ``task-succeeded`` event (what Flower shows as the result): ~100 µs for a
  ten-field dict, 5–8% of an I/O job's worker CPU. For flat results of plain values whose
  ``repr`` is short and identical to ``saferepr``'s, :func:`fast_saferepr` uses the built-in
  ``repr`` (~4 µs); anything else still goes to Celery's. The tracer looks the name up in
  ``celery.app.trace`` at every call, so that is the name replaced.
* **redis-py's ``get_lib_version``.** redis-py reads its own version from the package metadata
  for every new connection object (0.7 ms: a scan of ``sys.path``); a gevent worker ramping up
  to its concurrency opens hundreds. The version cannot change while the process runs, so it
  is cached.

A user's process that only submits jobs never gets either: :class:`LibraryPatches` is a worker
bootstep, added only with ``JOBQ_FAST_PATHS`` on, and it puts the originals back when the worker
stops.

Example::

    >>> fast_saferepr({"status": 200, "url": "http://127.0.0.1/"}, 1024)
    "{'status': 200, 'url': 'http://127.0.0.1/'}"
"""

from __future__ import annotations

from functools import cache
from typing import Any

import celery.app.trace
import redis.utils
from celery import Celery, bootsteps
from celery.utils.saferepr import saferepr

from workers.settings import Settings

# Scalars whose repr is their saferepr; strings only when printable without quotes or escapes.
_PLAIN_SCALARS = (int, float, bool, type(None))


def _plain(value: Any) -> bool:
    if isinstance(value, str):
        return "'" not in value and "\\" not in value and value.isprintable()
    return isinstance(value, _PLAIN_SCALARS)


def fast_saferepr(value: Any, maxlen: int | None = None, *args: Any, **kwargs: Any) -> str:
    """Celery's ``saferepr``, with the built-in ``repr`` for small flat results of plain values."""
    if maxlen and not args and not kwargs:
        flat = (
            _plain(value)
            or (
                isinstance(value, dict)
                and len(value) <= 64
                and all(isinstance(k, str) and _plain(k) and _plain(v) for k, v in value.items())
            )
            or (isinstance(value, list) and len(value) <= 64 and all(map(_plain, value)))
        )
        if flat:
            text = repr(value)
            if len(text) <= maxlen:
                return text
    return saferepr(value, maxlen, *args, **kwargs)


class LibraryPatches(bootsteps.StartStopStep):
    """Worker bootstep: replace the two globals while the worker runs.

    Applied in :meth:`create`, which runs while the worker is built, before any step starts:
    prefork children are forked when the pool starts, so they inherit the patched functions.
    """

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.originals: dict[str, Any] = {}

    def create(self, parent: Any) -> None:
        self.originals = {
            "saferepr": celery.app.trace.saferepr,
            "get_lib_version": redis.utils.get_lib_version,
        }
        celery.app.trace.saferepr = fast_saferepr
        redis.utils.get_lib_version = cache(self.originals["get_lib_version"])

    def stop(self, parent: Any) -> None:
        if self.originals:
            celery.app.trace.saferepr = self.originals["saferepr"]
            redis.utils.get_lib_version = self.originals["get_lib_version"]
            self.originals = {}

    terminate = stop


def install(app: Celery, settings: Settings) -> None:
    """Patch the two globals in ``app``'s worker processes only."""
    app.steps["worker"].add(LibraryPatches)
