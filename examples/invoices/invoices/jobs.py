"""The project's jobs; workers load them with ``JOBQ_JOBS=invoices.jobs``.

- ``fetch_rates`` (I/O, gevent pool): download exchange rates as JSON over HTTP, with a timeout,
  at most 5 requests a second per host across all workers (``by_host``), retried with backoff
  when the rates service is unreachable or slow.
- ``price_invoice`` (CPU, prefork pool): exact totals and tax of one invoice, and the SHA-256
  of its canonical JSON (the digest an archive or an e-invoicing portal asks for).

Example::

    from jobq import submit
    submit("fetch_rates", url="https://api.frankfurter.app/latest?from=EUR").get(timeout=30)
    submit("price_invoice", invoice_id="INV-1", lines=[...], tax_rate="0.20").get(timeout=30)
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, Field, HttpUrl

from invoices.pricing import price
from jobq import by_host, cpu_job, io_job


class RatesUnavailable(Exception):
    """The rates service did not answer in time, or answered 5xx: worth retrying."""


class BadRates(ValueError):
    """The rates service answered something that is not a rates document: not retried."""


class Line(BaseModel):
    """One invoice line (jobs receive it as a dict: arguments travel as JSON)."""

    sku: str
    quantity: Annotated[int, Field(ge=1)]
    unit_price: Decimal


@io_job(rate="5/s", rate_key=by_host("url"), retry_on=(RatesUnavailable,), max_retries=3)
def fetch_rates(
    url: HttpUrl, timeout: Annotated[float, Field(gt=0, le=60)] = 10.0
) -> dict[str, Any]:
    """Exchange rates from ``url`` (the shape of frankfurter.app's ``/latest``).

    Returns ``{"base": "EUR", "date": "…", "rates": {"USD": "1.1", …}}``, rates as decimal
    strings so no float rounding creeps into money.
    """
    # http(s) only: ``url`` is validated as an HttpUrl before the job is enqueued and again
    # before it runs, so no file: or custom scheme reaches urllib.
    request = urllib.request.Request(str(url), headers={"Accept": "application/json"})  # noqa: S310
    try:
        # The gevent worker makes this socket cooperative: a slow server holds one greenlet.
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            body = response.read(1_000_000)
    except urllib.error.HTTPError as exc:
        if exc.code >= 500:
            raise RatesUnavailable(f"{url}: HTTP {exc.code}") from None
        raise BadRates(f"{url}: HTTP {exc.code}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise RatesUnavailable(f"{url}: {exc}") from None
    try:
        document = json.loads(body, parse_float=Decimal)
        rates = {str(code): str(Decimal(str(rate))) for code, rate in document["rates"].items()}
        return {
            "base": str(document["base"]),
            "date": str(document.get("date", "")),
            "rates": rates,
        }
    except (ValueError, KeyError, TypeError, AttributeError, ArithmeticError) as exc:
        raise BadRates(f"{url}: not a rates document ({exc.__class__.__name__})") from None


@cpu_job
def price_invoice(
    invoice_id: str, lines: list[Line], tax_rate: Annotated[Decimal, Field(ge=0, le=1)]
) -> dict[str, str]:
    """Net, tax and gross of one invoice (decimal strings) and the SHA-256 of its canonical JSON."""
    canonical = json.dumps(
        {"invoice_id": invoice_id, "lines": lines, "tax_rate": str(tax_rate)},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return {
        "invoice_id": invoice_id,
        **price(lines, tax_rate),
        "sha256": hashlib.sha256(canonical.encode()).hexdigest(),
    }
