"""Helpers shared by the train, eval and compress commands."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


def user_errors() -> tuple[type[BaseException], ...]:
    from detaccel.config import ConfigError
    from detaccel.engine import CheckpointError, DataSetupError
    from detaccel.models import BackboneWeightsError

    return (ConfigError, CheckpointError, DataSetupError, BackboneWeightsError)


@contextlib.contextmanager
def as_command_errors() -> Iterator[None]:
    """Turn configuration, checkpoint, data and weights errors into :class:`CommandError`."""
    from detaccel.cli import CommandError

    try:
        yield
    except user_errors() as error:
        raise CommandError(str(error)) from None


def add_config_arguments(parser) -> None:
    parser.add_argument("--config", help="a YAML configuration (see configs/)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a configuration value, e.g. --set train.max_iter=100 (repeatable)",
    )


def default_out_dir(config_path: str | None) -> Path:
    return Path("outputs") / (Path(config_path).stem if config_path else "run")
