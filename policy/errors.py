"""User-facing policy errors: which file, where in it, what is wrong."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PolicyIssue:
    message: str
    file: str | None = None
    path: str = ""
    line: int | None = None

    def __str__(self) -> str:
        where = self.file or "<policy>"
        if self.line:
            where += f":{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class PolicyError(Exception):
    """One or more problems in policy files; never a traceback for the user."""

    def __init__(self, issues: list[PolicyIssue]):
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


def format_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
