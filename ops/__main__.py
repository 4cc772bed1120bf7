"""``python -m ops`` is the ``jobq`` command (useful where the console script is not on PATH)."""

from ops.entry import run

run()
