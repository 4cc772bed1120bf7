"""Invoice arithmetic: exact decimal totals and tax, rounded to the cent per invoice.

Pure functions, so the CPU job is a thin wrapper and the script can build its batch with them.

Example::

    >>> price([{"sku": "A", "quantity": 2, "unit_price": "10.00"}], "0.20")
    {'net': '20.00', 'tax': '4.00', 'gross': '24.00'}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

CENT = Decimal("0.01")


def cents(value: Decimal) -> Decimal:
    """``value`` rounded half up to the cent, as invoices are."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def price(lines: Iterable[Mapping[str, Any]], tax_rate: str | Decimal) -> dict[str, str]:
    """Net, tax and gross of an invoice's lines; tax is computed on the net and then rounded."""
    net = sum(
        (Decimal(str(line["unit_price"])) * int(line["quantity"]) for line in lines), Decimal()
    )
    tax = cents(net * Decimal(str(tax_rate)))
    return {"net": str(cents(net)), "tax": str(tax), "gross": str(cents(net) + tax)}


def sample_invoices(count: int) -> list[dict[str, Any]]:
    """``count`` deterministic invoices: invoice i bills i units at 10.00 plus 4.99 shipping."""
    return [
        {
            "invoice_id": f"INV-{number:05d}",
            "lines": [
                {"sku": f"SKU-{number}", "quantity": number, "unit_price": "10.00"},
                {"sku": "SHIPPING", "quantity": 1, "unit_price": "4.99"},
            ],
            "tax_rate": "0.20",
        }
        for number in range(1, count + 1)
    ]
