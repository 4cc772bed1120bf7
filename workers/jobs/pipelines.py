"""Pipelines that cross both pools, built with Celery canvas.

Example::

    $ jobq submit fetch_and_analyze url=http://127.0.0.1:8000/ --wait
"""

from __future__ import annotations

from celery import chain
from celery.canvas import Signature

from workers.jobs.http import HttpUrl, fetch_url
from workers.jobs.text import analyze_text
from workers.registry import pipeline


@pipeline
def fetch_and_analyze(url: HttpUrl, top: int = 10, timeout: float = 10.0) -> Signature:
    """Fetch a page on the I/O pool, then analyze it on the CPU pool.

    The page goes from the I/O worker to the CPU worker through Redis; it never travels through
    the producer. The handle returned follows the analysis.
    """
    return chain(
        fetch_url.s(url=url, timeout=timeout, keep_body=True),
        analyze_text.s(top=top),
    )
