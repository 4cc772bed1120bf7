"""Why the declared jobs cannot be loaded: a job module that fails to import, a name declared twice.

Both are mistakes in a project's configuration or code, found when a process first loads its
jobs (a worker at start, ``jobq up`` before starting anything, a producer at its first submit).
Each message is one line naming what to fix, so a command can print it as it is and exit 2.

Example::

    >>> print(DuplicateJob("total", ("a.jobs", "total"), ("b.jobs", "add")))
    job 'total' is declared twice: by a.jobs.total and by b.jobs.add (job names must be unique)
"""

from __future__ import annotations


class JobLoadError(RuntimeError):
    """The jobs this process declares cannot be loaded; the message is one line saying why."""


class JobModuleError(JobLoadError):
    """A job module (jobq's or one named in ``JOBQ_JOBS``) raised while being imported."""

    def __init__(self, module: str, error: BaseException, where: str | None = None) -> None:
        self.module = module
        self.error = error
        if isinstance(error, SyntaxError) and error.filename:
            # Its own message names only the file's base name; say the whole path, as below.
            where, message = f"{error.filename}:{error.lineno}", error.msg
        else:
            message = str(error)
        # One line whatever the error says: a library's message may hold several.
        what = " ".join(f"{type(error).__name__}: {message}".split())
        super().__init__(
            f"cannot load job module {module!r}: {what}" + (f" (at {where})" if where else "")
        )


class DuplicateJob(JobLoadError):
    """Two declarations share one job name; a name must say which function runs.

    ``first`` and ``second`` are the ``(module, function)`` of each declaration, in the order
    they were declared; :attr:`modules` names the two modules.
    """

    def __init__(self, name: str, first: tuple[str, str], second: tuple[str, str]) -> None:
        self.name = name
        self.modules = (first[0], second[0])
        # A clash with a job shipped with jobq is fixed by renaming the project's job: say so.
        shipped = _is_jobq(first[0]) != _is_jobq(second[0])
        hint = f"; {name!r} is a job shipped with jobq, rename yours" if shipped else ""
        super().__init__(
            f"job {name!r} is declared twice: by {'.'.join(first)} and by {'.'.join(second)} "
            f"(job names must be unique{hint})"
        )


def _is_jobq(module: str) -> bool:
    return module == "workers" or module.startswith("workers.")
