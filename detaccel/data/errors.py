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
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike


class DatasetError(Exception):
    """A problem with one dataset file: ``<path>: <problem>``.

    ``skippable`` is true for problems that loading with ``skip_bad`` would
    have skipped (a bad object or image), false for those nothing can skip
    (a missing or malformed annotation file, a split that does not exist).
    """

    def __init__(self, path: str | PathLike, problem: str, *, skippable: bool = False) -> None:
        self.path = str(path)
        self.problem = problem
        self.skippable = skippable
        super().__init__(f"{self.path}: {problem}")


class BadInputWarning(UserWarning):
    """A bad dataset item was skipped because skipping was asked for."""


@dataclass(frozen=True)
class DatasetIssue:
    """A problem that was turned into a warning: the file, the problem and what was skipped."""

    path: str
    problem: str
    skipped: str  # "image" or "object"
    kind: str = ""  # what kind of problem, e.g. "zero-area box" (counted in summaries); "" when not given

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
            raise DatasetError(path, problem, skippable=True)
        issue = DatasetIssue(str(path), problem, skipped)
        self.issues.append(issue)
        warnings.warn(str(issue), BadInputWarning, stacklevel=3)


def plural(count: int, noun: str) -> str:
    """``"1 box"``, ``"3 boxes"``, ``"2 entries"``: a count and an English noun phrase ending in a noun."""
    if count == 1:
        return f"{count} {noun}"
    if noun.endswith(("s", "x", "ch", "sh")):
        return f"{count} {noun}es"
    if noun.endswith("y") and noun[-2:-1] not in tuple("aeiou"):
        return f"{count} {noun[:-1]}ies"
    return f"{count} {noun}s"


def count_kinds(issues: Sequence[DatasetIssue]) -> dict[str, int]:
    """How many issues of each kind (issues without a kind are left out), most frequent first."""
    counts: dict[str, int] = {}
    for issue in issues:
        if issue.kind:
            counts[issue.kind] = counts.get(issue.kind, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: -item[1]))


def describe_kinds(counts: dict[str, int]) -> str:
    """``"3 zero-area boxes, 1 duplicate annotation id"``."""
    return ", ".join(plural(count, kind) for kind, count in counts.items())
