"""The ``detaccel`` command line: ``detaccel <command> [options]``.

Each command lives in a module of :mod:`detaccel.commands` that exposes
``register(subparsers)``; the module adds its parser and sets ``func`` to the
callable that runs it (taking the parsed namespace, returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from detaccel import __version__
from detaccel.allocator import reuse_freed_memory

# Modules of detaccel.commands, in the order their commands are listed.
COMMAND_MODULES = (
    "info",
    "data",
    "evaluate",
    "proposals",
    "train",
    "eval",
    "detect",
    "compress",
    "profile",
    "bench",
    "export",
)


class CommandError(Exception):
    """A user-facing error: printed as ``detaccel: error: <message>`` with exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="detaccel",
        description="Train, evaluate and accelerate region-based object detectors.",
    )
    parser.add_argument("--version", action="version", version=f"detaccel {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    for name in COMMAND_MODULES:
        importlib.import_module(f"detaccel.commands.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    reuse_freed_memory()  # per-image buffers reused, not page-faulted in anew (detaccel.allocator)
    try:
        return int(args.func(args) or 0)
    except CommandError as error:
        print(f"detaccel: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("detaccel: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
