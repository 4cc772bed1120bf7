"""invoices: an example project whose jobs run on jobq (see README.md)."""
