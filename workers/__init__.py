"""Everything that runs inside a jobq worker: the Celery app, settings, pool profiles and jobs.

Example::

    from workers.registry import io_job

    @io_job
    def ping(url: str) -> int: ...
"""
