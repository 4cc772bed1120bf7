"""The jobs shipped with jobq; importing this package registers them."""

from workers.jobs import faulty, http, pipelines, synthetic, text

__all__ = ["faulty", "http", "pipelines", "synthetic", "text"]
