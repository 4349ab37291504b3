"""Loading a trained (or compressed) detector from its checkpoint."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from detaccel.config.schema import Config
    from detaccel.models.detector import RegionDetector


def load_detector(
    checkpoint_path: str, config: Config | None = None, overrides: Sequence[str] = ()
) -> tuple[Config, RegionDetector, tuple[str, ...]]:
    """``(config, model, class_names)`` from a checkpoint, the model in eval mode on the CPU.

    With ``config``, its data and eval sections are used and its architecture
    must be the checkpoint's (its compression — SVD ranks, packed layers — aside).
    Without it, the checkpoint's own configuration is used, with ``overrides``
    (``section.key=value``) applied. ``checkpoint_path`` may also be an export
    directory (``detaccel export``): the model then runs its ONNX graphs
    (:func:`~detaccel.engine.exported.load_exported`).
    """
    from detaccel.engine.exported import is_export_directory, load_exported

    if is_export_directory(checkpoint_path):
        return load_exported(checkpoint_path, config, overrides)

    import copy

    from detaccel.config import config_from_dict
    from detaccel.engine import CheckpointError, load_checkpoint, load_model_state
    from detaccel.models import build_detector

    checkpoint = load_checkpoint(checkpoint_path)
    try:
        saved = config_from_dict(copy.deepcopy(checkpoint["config"]))
    except ValueError as error:
        raise CheckpointError(f"{checkpoint_path}: invalid configuration inside ({error})") from None
    if overrides and config is not None:
        raise ValueError("load_detector: pass overrides in the configuration or alone, not both")
    config, built = loading_configs(checkpoint["config"], saved, config, overrides, str(checkpoint_path))
    config.backbone.weights = built.backbone.weights = None  # the checkpoint holds every weight
    model = build_detector(built, len(checkpoint["class_names"]), checkpoint["class_names"])
    load_model_state(model, checkpoint["model"], str(checkpoint_path))
    if (config.proposals.name, config.proposals.params) != (saved.proposals.name, saved.proposals.params):
        model.set_proposal_generator(config.proposals.name, config.proposals.params)
    model.eval()
    return config, model, tuple(checkpoint["class_names"])


def loading_configs(
    saved_dict: dict, saved: Config, config: Config | None, overrides: Sequence[str], source: str
) -> tuple[Config, Config]:
    """``(config, built)`` of a saved model (its configuration ``saved_dict``, parsed as ``saved``)
    loaded with a given ``config`` or ``overrides``: the configuration it runs with (a given one must
    have the saved architecture, its compression aside, which it takes over) and the one to build it
    from (the run's, with the proposal slot it was saved with: a learned objectness head is part of
    the weights; the caller gives it the configured generator when that differs)."""
    import copy

    from detaccel.config import apply_overrides, config_from_dict, config_to_dict
    from detaccel.engine.trainer import check_same_architecture

    if overrides:
        config = config_from_dict(apply_overrides(copy.deepcopy(saved_dict), overrides))
    if config is None:
        config = saved
    else:
        compare = config_to_dict(saved)
        compare["head"]["svd_ranks"] = config.head.svd_ranks
        compare["head"]["packed"] = config.head.packed
        check_same_architecture(compare, config, source)
        config.head.svd_ranks = dict(saved.head.svd_ranks)
        config.head.packed = {path: dict(spec) for path, spec in saved.head.packed.items()}
        take_resolved_shapes(config.proposals, saved.proposals)
    built = copy.deepcopy(config)
    built.proposals.name, built.proposals.params = saved.proposals.name, copy.deepcopy(saved.proposals.params)
    return config, built


def take_resolved_shapes(given, saved) -> None:
    """R²-CNN's ``shapes: auto`` in a given configuration becomes the shapes the checkpoint's training
    resolved it to (in place), so that the configuration describes the model as trained."""
    if given.name != saved.name or not isinstance(given.params, dict) or not isinstance(saved.params, dict):
        return
    if given.params.get("shapes") != "auto" or saved.params.get("shapes") in (None, "auto"):
        return
    resolved = {k: v for k, v in given.params.items() if k not in ("shapes", "num_shapes", "shapes_scale")}
    resolved.update({k: saved.params[k] for k in ("shapes", "shapes_scale") if k in saved.params})
    given.params = resolved
