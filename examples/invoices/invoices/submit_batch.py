"""Price a batch of invoices on jobq's workers and convert the total to another currency.

Submits one ``fetch_rates`` job (I/O pool) and one ``price_invoice`` job per invoice (CPU pool,
in one ``submit_many``), waits for all of them and prints a summary. Workers must load this
project's jobs (``JOBQ_JOBS=invoices.jobs``); ``REDIS_URL`` says where they are.

Example::

    $ python -m invoices.submit_batch --count 20 --currency USD
    priced 20 invoices on the cpu workers; 1 EUR = 1.1 USD (rates of 2026-11-30)
    net 2199.80 EUR, tax 440.00 EUR, gross 2639.80 EUR = 2903.78 USD
"""

from __future__ import annotations

import argparse
import os
import sys
from decimal import Decimal

from invoices.pricing import cents, sample_invoices
from jobq import submit, submit_many

DEFAULT_RATES_URL = "https://api.frankfurter.app/latest?from=EUR"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m invoices.submit_batch", description=__doc__)
    parser.add_argument("--count", type=int, default=20, help="invoices in the batch")
    parser.add_argument("--currency", default="USD", help="convert the gross total into this")
    parser.add_argument(
        "--rates-url",
        default=os.environ.get("INVOICES_RATES_URL", DEFAULT_RATES_URL),
        help="exchange rates JSON (default: $INVOICES_RATES_URL or frankfurter.app)",
    )
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for results")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")

    invoices = sample_invoices(args.count)
    rates_job = submit("fetch_rates", url=args.rates_url)
    priced_jobs = submit_many("price_invoice", invoices)
    try:
        priced = [job.get(timeout=args.timeout) for job in priced_jobs]
        rates = rates_job.get(timeout=args.timeout)
    except Exception as exc:  # a job's own error, re-raised by get(), or a timeout
        print(f"submit_batch: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 1
    rate = rates["rates"].get(args.currency)
    if rate is None:
        print(f"submit_batch: no {args.currency} rate in {args.rates_url}", file=sys.stderr)
        return 1

    net, tax, gross = (sum(Decimal(p[key]) for p in priced) for key in ("net", "tax", "gross"))
    base = rates["base"]
    converted = cents(gross * Decimal(rate))
    print(
        f"priced {len(priced)} invoices on the cpu workers; "
        f"1 {base} = {rate} {args.currency} (rates of {rates['date'] or 'today'})"
    )
    print(f"net {net} {base}, tax {tax} {base}, gross {gross} {base} = {converted} {args.currency}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
