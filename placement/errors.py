"""Typed errors: each carries data, and its message ends with how to fix it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Issue:
    """One problem in the configuration, located to file:line and a field path."""

    file: str
    line: int
    path: str
    message: str
    fix: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        field = f" {self.path}:" if self.path else ""
        return f"{where}:{field} {self.message}. Fix: {self.fix}"


class PlacementError(Exception):
    """Base of the project's exceptions."""


class ConfigError(PlacementError):
    """The configuration (YAML documents) is invalid; `issues` lists every problem found."""

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = sorted(issues)
        lines = "\n".join(f"  {i}" for i in self.issues)
        super().__init__(
            f"{len(self.issues)} problem(s) in the configuration:\n{lines}\n"
            "Fix each one and run `placement policy validate DIR` again."
        )


class UnknownReferenceError(PlacementError):
    """A name refers to an object that does not exist."""

    def __init__(self, kind: str, name: str, known: list[str]) -> None:
        self.kind = kind
        self.name = name
        self.known = known
        shown = ", ".join(sorted(known)[:20]) or "none"
        super().__init__(f"no {kind} named {name!r}; known: {shown}. Use one of those names.")


class NotFoundError(PlacementError):
    """No object of this kind with this id or name."""

    def __init__(self, kind: str, key: str) -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"no {kind} {key!r}; list them with GET /v1/{kind}s to find the id")


class ConflictError(PlacementError):
    """The request clashes with the current state; the message says what to do instead."""


class UnprocessableError(PlacementError):
    """Valid by the schema, yet this one request cannot be carried out (the engine or the
    store refused it); only this request fails."""


class StoreUnavailableError(PlacementError):
    """The database failed under this request; the message says whether it was stored."""


class ForbiddenError(PlacementError):
    """The caller may not do this (wrong role or team)."""


class UnauthorizedError(PlacementError):
    """No valid credentials."""


@dataclass(frozen=True)
class FieldProblem:
    """One invalid field in a request body."""

    loc: tuple[str | int, ...]
    message: str
    fix: str


class InvalidRequestError(PlacementError):
    """A request body is well-formed JSON but its content is invalid; lists every field."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        self.problems = problems
        text = "; ".join(f"{'.'.join(map(str, p.loc))}: {p.message} ({p.fix})" for p in problems)
        super().__init__(f"invalid request: {text}")
