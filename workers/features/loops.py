"""Background loops as bootsteps: a thread that starts and stops with its part of the worker.

A feature that must do something every few seconds (re-read the pause flags, move parked jobs)
subclasses :class:`LoopThread` for the loop and :class:`LoopStep` for its life: a worker step
(``app.steps["worker"]``) runs it for the whole worker, a consumer step (``app.steps["consumer"]``)
only while the broker connection is up, and a warm shutdown stops it in the blueprint's order.

Example::

    class Tick(LoopThread):
        def run(self) -> None:
            while not self.stopping.wait(1.0):
                ...

    class TickStep(LoopStep):
        def make_thread(self, parent: Any) -> LoopThread:
            return Tick("jobq-tick")
"""

from __future__ import annotations

import threading
from typing import Any

from celery import bootsteps


class LoopThread(threading.Thread):
    """A daemon thread whose ``run`` loops until :attr:`stopping` is set."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.stopping = threading.Event()


class LoopStep(bootsteps.StartStopStep):
    """A bootstep that runs one :class:`LoopThread` from its start to its stop."""

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.thread: LoopThread | None = None

    def make_thread(self, parent: Any) -> LoopThread:
        """The loop to run for ``parent`` (the worker, or its consumer)."""
        raise NotImplementedError

    def start(self, parent: Any) -> None:
        self.thread = self.make_thread(parent)
        self.thread.start()

    def stop(self, parent: Any) -> None:
        if self.thread is not None:
            self.thread.stopping.set()
            self.thread = None

    shutdown = stop  # consumer blueprint
    terminate = stop  # worker blueprint, cold shutdown
