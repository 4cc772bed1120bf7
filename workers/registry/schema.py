"""Argument schemas derived from a job's signature, checked before a job is enqueued or run.

A job's type hints are its schema: producers validate the keyword arguments against it before
anything reaches Redis, and workers validate again before running (a message may come from
any Celery client).

Example::

    >>> def resize(width: int, height: int = 10) -> None: ...
    >>> ArgumentSchema.from_function(resize).validate({"width": "3"})
    {'width': 3, 'height': 10}
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, ValidationError, create_model


class InvalidArguments(ValueError):
    """The arguments given for a job do not match its declared schema."""

    def __init__(self, job: str, problems: list[str]) -> None:
        self.job = job
        self.problems = problems
        super().__init__(f"invalid arguments for {job}: " + "; ".join(problems))


@dataclass(frozen=True)
class ArgumentSchema:
    """A pydantic model of a job's keyword arguments (unknown names are refused).

    ``steps`` models the positional-only parameters, which only the step before in a pipeline
    fills (with its result); a worker validates them too, as a message may come from anyone.
    """

    job: str
    model: type[BaseModel]
    steps: type[BaseModel] | None = None

    @classmethod
    def from_function(cls, func: Callable[..., Any], *, name: str | None = None) -> ArgumentSchema:
        """Build the schema from ``func``'s parameters, their annotations and defaults."""
        fields: dict[str, Any] = {}
        steps: dict[str, Any] = {}
        for param in inspect.signature(func, eval_str=True).parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            annotation = Any if param.annotation is param.empty else param.annotation
            default = ... if param.default is param.empty else param.default
            # A positional-only parameter receives the previous step's result in a pipeline;
            # it is not something a submitter passes, so it is not among the arguments.
            (steps if param.kind is param.POSITIONAL_ONLY else fields)[param.name] = (
                annotation,
                default,
            )
        job = name or func.__name__
        config = ConfigDict(extra="forbid", frozen=True)
        model = create_model(f"{job}_arguments", __config__=config, **fields)
        step_model = (
            create_model(f"{job}_step_input", __config__=config, **steps) if steps else None
        )
        return cls(job=job, model=model, steps=step_model)

    def validate(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Return the arguments coerced to their declared types, or raise InvalidArguments."""
        try:
            parsed = self.model.model_validate(dict(arguments))
        except ValidationError as exc:
            raise InvalidArguments(self.job, describe(exc)) from None
        return parsed.model_dump(mode="json")

    def validate_call(
        self, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Check a delivered call: positional values (a step's input) and keyword arguments.

        >>> def count(page: dict | None = None, /, top: int = 3) -> None: ...
        >>> ArgumentSchema.from_function(count).validate_call(({"a": 1},), {"top": "2"})
        (({'a': 1},), {'top': 2})
        """
        names = list(self.steps.model_fields) if self.steps is not None else []
        if len(args) > len(names):
            raise InvalidArguments(
                self.job, [f"arguments: {len(args)} positional given, it takes {len(names)}"]
            )
        values: tuple[Any, ...] = ()
        if args:
            assert self.steps is not None
            try:
                parsed = self.steps.model_validate(dict(zip(names, args, strict=False)))
            except ValidationError as exc:
                raise InvalidArguments(self.job, describe(exc)) from None
            dumped = parsed.model_dump(mode="json")
            values = tuple(dumped[name] for name in names[: len(args)])
        return values, self.validate(kwargs)

    def parameters(self) -> dict[str, str]:
        """Parameter names with a short type description, for help texts."""
        return {
            name: _type_name(field.annotation) + ("" if field.is_required() else " (optional)")
            for name, field in self.model.model_fields.items()
        }


def describe(exc: ValidationError) -> list[str]:
    """Turn pydantic's errors into short human sentences: ``'url: field required'``."""
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "arguments"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown argument"
        elif error["type"] == "missing":
            message = "required argument is missing"
        problems.append(f"{where}: {message}")
    return problems


def _type_name(annotation: Any) -> str:
    # Annotated[int, Field(...)] shows as its base type; unions as "str | None".
    name = getattr(annotation, "__name__", None) if not get_args(annotation) else None
    return name or str(annotation).replace("typing.", "").replace("NoneType", "None")
