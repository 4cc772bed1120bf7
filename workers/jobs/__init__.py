"""The jobs shipped with jobq; importing this package registers them."""

from workers.jobs import http, pipelines, synthetic, text

__all__ = ["http", "pipelines", "synthetic", "text"]
