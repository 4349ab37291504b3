"""Helpers shared by the train, eval and compress commands."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


def user_errors() -> tuple[type[BaseException], ...]:
    from detaccel.config import ConfigError
    from detaccel.engine import CheckpointError, DataSetupError
    from detaccel.engine.export import ExportError
    from detaccel.models import BackboneWeightsError

    return (ConfigError, CheckpointError, DataSetupError, BackboneWeightsError, ExportError)


@contextlib.contextmanager
def as_command_errors() -> Iterator[None]:
    """Turn configuration, checkpoint, data and weights errors into :class:`CommandError`."""
    from detaccel.cli import CommandError

    try:
        yield
    except user_errors() as error:
        raise CommandError(str(error)) from None


MODEL_HELP = "a detaccel checkpoint (trained or compressed), or a directory written by detaccel export"


def model_path_exists(path: str) -> bool:
    """Whether ``path`` is a checkpoint file or an export directory."""
    from detaccel.engine.exported import is_export_directory

    return Path(path).is_file() or is_export_directory(path)


def default_eval_dir(model_path: str, split: str) -> Path:
    """``eval_<split>`` next to a checkpoint, or inside an export directory."""
    path = Path(model_path).resolve()
    return (path if path.is_dir() else path.parent) / f"eval_{split}"


def add_config_arguments(parser) -> None:
    parser.add_argument("--config", help="a YAML configuration (see configs/)")
    add_override_argument(parser)


def add_override_argument(parser) -> None:
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


def add_generator_argument(parser) -> None:
    parser.add_argument(
        "--generator",
        metavar="NAME",
        help="proposal generator to run with (default: the configuration's proposals.name); r2cnn reads "
        "the detector's own features",
    )


def use_generator(model, config, name: str | None) -> str:
    """Put generator ``name`` in ``model``'s proposal slot (the configured one's parameters when it is
    the configured generator); returns the name now in use."""
    from detaccel.cli import CommandError
    from detaccel.proposals.registry import canonical_name

    if name is None or canonical_name(name) == canonical_name(config.proposals.name):
        name = config.proposals.name
        params = config.proposals.params
    else:
        params = {}
    try:
        model.set_proposal_generator(name, params)
    except (TypeError, ValueError) as error:
        raise CommandError(f"--generator {name}: {error}") from None
    return canonical_name(name)


def add_runtime_argument(parser) -> None:
    parser.add_argument(
        "--runtime",
        choices=("torch", "onnxruntime"),
        default=None,
        help="run the backbone at inference in eager PyTorch or in ONNX Runtime (the same weights "
        "exported in the process; CPU); default: the configuration's backbone.runtime",
    )


def use_runtime(model, config, runtime: str | None) -> None:
    """Run ``model``'s backbone in ``runtime`` (``None``: as configured), recorded in ``config``."""
    from detaccel.cli import CommandError

    if runtime is None:
        return
    try:
        model.backbone.set_runtime(runtime)
    except ValueError as error:
        raise CommandError(f"--runtime {runtime}: {error}") from None
    config.backbone.runtime = runtime


def inference_device(requested: str, model) -> str:
    """The device to run ``model`` on: ``requested``, but the CPU for one running exported graphs."""
    from detaccel.cli import CommandError

    if not model.backbone.exported:
        return requested
    if requested not in ("auto", "cpu"):
        raise CommandError(f"--device {requested}: an exported detector runs in ONNX Runtime on the CPU")
    return "cpu"
