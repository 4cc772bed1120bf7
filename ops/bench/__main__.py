"""``python -m ops.bench [SCENARIO...]``: run benchmark scenarios and write docs/benchmarks.md.

Each scenario runs in a child process of its own, with its own private redis-server, so the
Celery app in that process points at it from the first import and nothing carries over from
one scenario to the next. Results are kept as JSON (``docs/bench/<scenario>.json``); the report
and charts are rebuilt from every JSON present, so re-running one scenario updates its section
and keeps the others.

Example::

    $ python -m ops.bench                    # everything, 3 rounds (~15 min on 2 cores)
    $ python -m ops.bench overhead submission --rounds 5
    $ python -m ops.bench --tiny --out /tmp/bench   # a smoke run in seconds
"""

from __future__ import annotations

from ops.bench.runner import main

if __name__ == "__main__":
    main()
