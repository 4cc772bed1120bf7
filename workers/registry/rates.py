"""Declaring a rate limit on a job: ``@io_job(rate="20/s", rate_key=by_host("url"))``.

The limit holds cluster-wide (one schedule in Redis, :mod:`workers.stores.rate_limits`); the
worker waits for each job's turn before its body runs (:mod:`workers.features.rate_limits`).

Example::

    @io_job(rate="5/s", rate_key=by_host("url"))
    def call_api(url: str) -> dict: ...
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from workers.keys import RATE_ATTRIBUTE, RATE_KEY_ATTRIBUTE
from workers.stores.rate_limits import parse_rate

KeyFunction = Callable[[Mapping[str, Any]], str]


DEFAULT_PORTS = {"http": 80, "https": 443}


def by_host(argument: str) -> KeyFunction:
    """A key function: one limit per host of the URL in ``argument``.

    The key is the host name, lowercased, plus the port when it is not the scheme's default:
    ``http://alice:pw@Example.com:80/a`` and ``http://example.com/b`` share ``example.com``.
    Credentials in the URL are never part of the key (it is a Redis key name).

    >>> by_host("url")({"url": "https://bob:pw@API.example.com:8443/v1"})
    'api.example.com:8443'
    """

    def host_of(arguments: Mapping[str, Any]) -> str:
        try:
            parts = urlsplit(str(arguments.get(argument, "")))
            port = parts.port
        except ValueError:  # not a URL (a bad port, a broken IPv6 literal): the job-wide limit
            return ""
        host = (parts.hostname or "").rstrip(".")
        if ":" in host:
            host = f"[{host}]"  # an IPv6 literal, bracketed as in a URL
        if port is None or port == DEFAULT_PORTS.get(parts.scheme.lower()):
            return host
        return f"{host}:{port}"

    host_of.__name__ = f"host of {argument}"
    return host_of


def rate_options(options: dict[str, Any]) -> tuple[dict[str, Any], str | None, KeyFunction | None]:
    """Take ``rate=``/``rate_key=`` out of a declaration's options, as task attributes.

    Returns (the Celery task options, the declared rate, the key function). The rate is checked
    at declaration, so a typo fails at import, not at the first run. Celery's own
    ``rate_limit`` is refused: it holds per worker process only.
    """
    options = dict(options)
    if "rate_limit" in options:
        raise TypeError("use rate='N/s' (cluster-wide) instead of Celery's per-worker rate_limit")
    rate = options.pop("rate", None)
    if rate is not None:
        parse_rate(rate)
    key_function = options.pop("rate_key", None)
    options[RATE_ATTRIBUTE] = rate
    # Task options become class attributes: staticmethod keeps the function from being bound.
    options[RATE_KEY_ATTRIBUTE] = staticmethod(key_function) if key_function else None
    return options, rate, key_function
