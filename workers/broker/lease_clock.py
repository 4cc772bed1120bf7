"""Leases measured on one clock, Redis's, not on each host's.

kombu stamps a delivery in ``unacked_index`` with the receiving host's ``time()``, and its
sweep (``QoS.restore_visible``) puts back every delivery older than ``visibility_timeout`` by
the sweeping host's ``time()``. With hosts' clocks apart, the lease is wrong by their skew: a
sweeper 20 s ahead restores live jobs of a 30 s lease on every sweep (they run twice), a holder
ahead stamps the future and its jobs come back that much later after it dies.

Here every lease time is Redis's ``TIME``: the scripts that start a lease (the batched fetch,
``fetch_and_record.lua``; :meth:`LeasedQoS.append` on the stock path, ``record_unacked.lua``)
and renew it (``renew_leases.lua``) read it in Redis, and :meth:`LeasedQoS.restore_visible`
compares against it. Used by both jobq channels (:class:`~workers.broker.envelopes.GuardedChannel`
and the batched one), so it holds with ``JOBQ_FAST_PATHS`` off too.

Example::

    >>> renew_leases(client, "unacked_index", ["a-delivery-tag"])   # -> 1 if still unacked
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kombu.transport import redis as redis_transport
from kombu.transport import virtual
from kombu.utils.json import dumps

from workers.stores.scripts import LuaScript

RECORD_UNACKED = LuaScript(__package__, "record_unacked.lua")
RENEW_LEASES = LuaScript(__package__, "renew_leases.lua")


def redis_now(client: Any) -> float:
    """Seconds since the epoch by the Redis server's clock (``TIME``)."""
    seconds, micros = client.time()
    return seconds + micros / 1_000_000


def renew_leases(client: Any, unacked_index_key: str, tags: Sequence[str]) -> int:
    """Restart the lease of each still-unacked delivery in ``tags`` at Redis's now."""
    if not tags:
        return 0
    return int(RENEW_LEASES(client, keys=[unacked_index_key], args=list(tags)))


class LeasedQoS(redis_transport.QoS):
    """kombu's Redis QoS with lease times from the Redis clock (see the module docstring)."""

    def append(self, message: Any, delivery_tag: str) -> None:
        delivery = message.delivery_info
        record = dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
        # kombu's prefixing client prefixes only an EVALSHA's first key: the second comes
        # prefixed already (kombu does the same for its own scripts).
        keys = [self.unacked_index_key, self.channel.global_keyprefix + self.unacked_key]
        with self.channel.conn_or_acquire() as client:
            RECORD_UNACKED(client, keys=keys, args=[delivery_tag, record])
        virtual.QoS.append(self, message, delivery_tag)

    def restore_visible(self, start: int = 0, num: int = 10, interval: int = 10) -> None:
        # kombu 5.7.0's QoS.restore_visible; only the clock differs.
        self._vrestore_count += 1
        if (self._vrestore_count - 1) % (interval or 1):
            return
        with self.channel.conn_or_acquire() as client:
            ceil = redis_now(client) - self.visibility_timeout
            try:
                with redis_transport.Mutex(
                    client, self.unacked_mutex_key, self.unacked_mutex_expire
                ):
                    visible = client.zrange(
                        self.unacked_index_key,
                        ceil,
                        0,
                        desc=True,
                        byscore=True,
                        offset=num and start,
                        num=num,
                        withscores=True,
                    )
                    for tag, _score in visible or []:
                        self.restore_by_tag(tag, client)
            except redis_transport.MutexHeld:
                pass
