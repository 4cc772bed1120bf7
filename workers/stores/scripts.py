"""Lua scripts kept as ``.lua`` files beside the code that runs them, loaded once per process.

Every script jobq runs in Redis is a file next to its caller, so it reads (and diffs) as Lua.
A :class:`LuaScript` is run in one of two ways:

* ``script(client, keys, args)``: EVALSHA on a script registered once per client (redis-py's
  ``Script`` loads it again by itself after a Redis restart empties the script cache);
* ``script.queue(pipe, keys, args)``: EVAL with the text, on a pipeline. redis-py would make a
  pipeline ask the server whether the script exists first (SCRIPT EXISTS, one more round trip
  per batch); Redis caches the compiled script either way.

Example::

    RESERVE = LuaScript(__package__, "reserve_turn.lua")
    wait_us, turn_us = RESERVE(get_redis(), keys=[schedule, stats], args=[interval, job])
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from functools import cached_property
from importlib import resources
from typing import Any

import redis


class LuaScript:
    """One ``.lua`` file of package ``package``, registered once per Redis client."""

    def __init__(self, package: str, filename: str) -> None:
        self.package = package
        self.filename = filename
        self._registered: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    @cached_property
    def text(self) -> str:
        """The script's source, read from the package on first use."""
        return resources.files(self.package).joinpath(self.filename).read_text("utf-8")

    def __call__(
        self, client: redis.Redis, keys: Sequence[Any] = (), args: Sequence[Any] = ()
    ) -> Any:
        """Run the script now (EVALSHA; loaded again by redis-py if Redis forgot it)."""
        script = self._registered.get(client)
        if script is None:
            with self._lock:
                script = self._registered.get(client)
                if script is None:
                    script = self._registered[client] = client.register_script(self.text)
        return script(keys=list(keys), args=list(args))

    def queue(self, pipe: Any, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> None:
        """Add the script to ``pipe`` (EVAL with its text: no extra round trip per batch)."""
        pipe.eval(self.text, len(keys), *keys, *args)

    def __repr__(self) -> str:
        return f"LuaScript({self.package}/{self.filename})"
