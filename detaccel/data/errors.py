"""Errors and warnings about bad dataset files.

Every problem found in a dataset names the file and what is wrong with it.
Loaders raise :class:`DatasetError` at the first problem, unless they were
asked to skip bad input: then the bad item (an object or a whole image) is
left out, a :class:`BadInputWarning` is issued and the problem is recorded
as a :class:`DatasetIssue` on the loaded dataset, so that nothing is ever
dropped silently.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from os import PathLike


class DatasetError(Exception):
    """A problem with one dataset file: ``<path>: <problem>``."""

    def __init__(self, path: str | PathLike, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class BadInputWarning(UserWarning):
    """A bad dataset item was skipped because skipping was asked for."""


@dataclass(frozen=True)
class DatasetIssue:
    """A problem that was turned into a warning: the file, the problem and what was skipped."""

    path: str
    problem: str
    skipped: str  # "image" or "object"

    def __str__(self) -> str:
        return f"{self.path}: {self.problem} ({self.skipped} skipped)"


class IssueLog:
    """Raises on a problem, or (with ``skip_bad``) warns and records it."""

    def __init__(self, skip_bad: bool) -> None:
        self.skip_bad = skip_bad
        self.issues: list[DatasetIssue] = []

    def report(self, path: str | PathLike, problem: str, skipped: str) -> None:
        """Raise :class:`DatasetError`, or warn and record when skipping bad input."""
        if not self.skip_bad:
            raise DatasetError(path, problem)
        issue = DatasetIssue(str(path), problem, skipped)
        self.issues.append(issue)
        warnings.warn(str(issue), BadInputWarning, stacklevel=3)
