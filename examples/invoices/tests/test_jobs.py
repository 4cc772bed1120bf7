"""The project's jobs, run by real jobq workers (jobq's pytest plugin starts Redis and them)."""

from __future__ import annotations

import hashlib
import json

import pytest
from invoices.jobs import BadRates

from jobq import submit

LINES = [
    {"sku": "BOOK", "quantity": 3, "unit_price": "12.50"},
    {"sku": "SHIPPING", "quantity": 1, "unit_price": "4.99"},
]


def test_price_invoice_totals_tax_and_digest(jobq_worker):
    jobq_worker("cpu", concurrency=1)

    result = submit("price_invoice", invoice_id="INV-7", lines=LINES, tax_rate="0.20").get(
        timeout=30
    )

    # 3 x 12.50 + 4.99 = 42.49; 20 % of it is 8.498, rounded to the cent: 8.50.
    assert (result["net"], result["tax"], result["gross"]) == ("42.49", "8.50", "50.99")
    canonical = json.dumps(
        {"invoice_id": "INV-7", "lines": LINES, "tax_rate": "0.20"},
        sort_keys=True,
        separators=(",", ":"),
    )
    assert result["sha256"] == hashlib.sha256(canonical.encode()).hexdigest()


def test_fetch_rates_reads_the_rates_service(jobq_worker, rates_site):
    jobq_worker("io")

    good = submit("fetch_rates", url=f"{rates_site}/latest?from=EUR", timeout=5)
    bad = submit("fetch_rates", url=f"{rates_site}/not-json", timeout=5)

    assert good.get(timeout=30) == {
        "base": "EUR",
        "date": "2026-11-30",
        "rates": {"USD": "1.1", "GBP": "0.85"},
    }
    # A page that is not a rates document fails the job at once (no retry), with its reason.
    with pytest.raises(BadRates, match="not a rates document"):
        bad.get(timeout=30)
