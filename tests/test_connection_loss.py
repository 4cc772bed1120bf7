"""Adopting running jobs after a reconnect: what is acked, kept, or left to its lease (plain)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from workers.features import connection_loss


class Message:
    def __init__(self, tag: str) -> None:
        self.delivery_tag = tag
        self.acknowledged = False
        self.channel: Any = None
        self.acks = 0

    def ack(self) -> None:
        self.acks += 1
        self.acknowledged = True


def adopt(*requests: Any) -> Any:
    delivered: dict[str, Any] = {}
    qos = SimpleNamespace(_delivered=delivered, _dirty=set(), _quick_append=delivered.__setitem__)
    channel = SimpleNamespace(qos=qos)
    consumer = SimpleNamespace(task_consumer=SimpleNamespace(channel=channel))
    connection_loss._detached[:] = list(requests)
    assert connection_loss.adopt_detached(consumer) == len(requests)
    return channel


def test_a_job_left_to_its_lease_is_not_acked_by_the_reconnect() -> None:
    # A job whose pre-body check could not reach Redis, or whose dead letter could not be
    # stored, is "acknowledged" on its worker but its message must never be acked: before,
    # the reconnect took it for an ack lost with the connection and acked it (job lost).
    left = SimpleNamespace(message=Message("left"), acknowledged=True, left_to_lease=True)
    finished = SimpleNamespace(message=Message("done"), acknowledged=True)
    still_running = SimpleNamespace(message=Message("running"), acknowledged=False)
    channel = adopt(left, finished, still_running)
    assert left.message.acks == 0
    assert finished.message.acks == 1
    assert still_running.message.acks == 0
    assert "running" in channel.qos._delivered
    assert "left" not in channel.qos._delivered
