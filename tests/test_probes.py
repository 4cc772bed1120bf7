"""Probes (the synthetic jobs' concurrency records) expire, however steadily they are used."""

from __future__ import annotations

from workers.keys import PROBE_PREFIX
from workers.stores.probes import probe, read_probe


def test_probe_visits_expire_even_when_the_probe_is_used_steadily(redis_client):
    visits = PROBE_PREFIX + "steady:visits"
    with probe("steady"):
        pass
    assert 0 < redis_client.ttl(visits) <= 3600
    redis_client.expire(visits, 5)  # as if the first visit was almost an hour ago
    for _ in range(3):
        with probe("steady"):
            pass
    # Each visit used to push the expiry another hour away: under steady use, never.
    assert 0 < redis_client.ttl(visits) <= 5
    assert len(read_probe("steady")["visits"]) == 4
