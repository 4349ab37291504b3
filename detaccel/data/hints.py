"""What to suggest after a dataset error: only options that can fix that error.

The same problems are fixed by command-line options (``--classes``) or by
configuration keys (``data.classes``); :func:`dataset_error_hint` names the
ones of the context it is asked for.
"""

from __future__ import annotations

from pathlib import Path

from detaccel.data.classes import AUTO, DISCOVER, NAMED_CLASS_LISTS, ClassSpec
from detaccel.data.errors import DatasetError
from detaccel.data.voc import SplitNotFoundError, UnknownClassError

__all__ = ["dataset_error_hint"]


def _explicit(classes: ClassSpec) -> bool:
    """Whether ``classes`` is the user's own list of names (not a named list, auto or discover)."""
    return not (isinstance(classes, str) and classes in (AUTO, DISCOVER, *NAMED_CLASS_LISTS))


def dataset_error_hint(
    error: DatasetError,
    *,
    config: bool = False,
    classes: ClassSpec = AUTO,
    skip_bad: bool = False,
    root: str | None = None,
) -> str:
    """What to try after ``error`` (``""`` when no option can fix it).

    Args:
        error: the error raised while loading.
        config: name configuration keys (``data.classes``) instead of options (``--classes``).
        classes: the class list asked for.
        skip_bad: whether bad items were already being skipped.
        root: the dataset root as the user gave it (named in the hints).
    """
    if isinstance(error, UnknownClassError):
        if config:
            hint = "set data.classes: discover to take the classes from the annotations, or list every class"
            if _explicit(classes):
                hint += "; data.skip_bad: true leaves out objects of classes not listed"
        else:
            hint = (
                "pass --classes discover to take the classes from the annotations, or --classes with every "
                "class name, comma-separated"
            )
            if _explicit(classes):
                hint += "; --skip-bad leaves out objects of classes not listed"
        return hint
    if isinstance(error, SplitNotFoundError):
        if error.problem == "split directory not found":
            where = "data.split_dir" if config else "--split-dir"
            return f"{where} must be the directory that `detaccel data split` wrote the split files to"
        write = f"write split files with `detaccel data split --root {root or 'ROOT'} --split-dir DIR` and "
        if config:
            existing = "set data.train_split / data.test_split to splits found, or " if error.known else ""
            return f"{existing}{write}set data.split_dir: DIR"
        existing = "pass --split with one of the splits found, or " if error.known else ""
        return f"{existing}pass --split all for every annotated image, or {write}pass --split-dir DIR"
    if getattr(error, "skippable", False) and not skip_bad:
        if config:
            return "set data.skip_bad: true to skip bad items with a warning"
        return "rerun with --skip-bad to skip bad items with a warning"
    if config and root and error.problem == "dataset directory not found" and not Path(root).is_absolute():
        return (
            f"a relative data.root is read from the current directory, {Path.cwd()}, or from the "
            "configuration file's directory when it is there"
        )
    return ""
