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
