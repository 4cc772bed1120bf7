"""Flower's configuration file for ``jobq flower``: only the task formatter, nothing else.

Flower executes ``flowerconfig.py`` from its working directory unless told otherwise, and the
options set there override the ``FLOWER_*`` environment (``basic_auth = []`` would turn
authentication off). ``jobq flower`` passes ``--conf`` pointing here, so whatever directory it
starts in, Flower is configured only by jobq's command line and the environment, plus the one
option that cannot be given on a command line: ``format_task``, a Python function, which shows
a running job's progress on its task page (ops/flower_progress.py).
"""

from ops.flower_progress import format_task

__all__ = ["format_task"]
