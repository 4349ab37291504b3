"""Running detection from an export directory alone (``detaccel export``'s graphs and manifest).

:func:`load_exported` builds the detector the manifest's configuration describes and puts each
exported graph in the member it replaces (:meth:`Backbone.use_graph`,
:meth:`ObjectnessHead.use_graph`, the RoI features' and :meth:`RoIHeads.use_graph`): the same
pipeline runs as for a checkpoint (preprocessing, R²-CNN's grouping and post-processing in the
project's operators), every dense part and the RoI pooling in ONNX Runtime. A directory that
is not an export, a manifest that is not valid, or a graph that is not the one written with the
manifest (its SHA-256 differs) is refused naming the file.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from detaccel.engine.checkpoint import CheckpointError
from detaccel.engine.export import FORMAT, HEAD_OUTPUTS, MANIFEST, ExportError, file_digest

REQUIRED_KEYS = ("format", "graphs", "class_names", "backbone_outputs", "objectness_stage", "config")


def is_export_directory(path: str | Path) -> bool:
    """Whether ``path`` is a directory holding an export manifest."""
    return (Path(path) / MANIFEST).is_file()


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The manifest of an export directory, checked for the keys the runner reads."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        raise ExportError(f"{directory}: not an export directory (no {MANIFEST}; see detaccel export)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ExportError(f"{path}: not a readable JSON manifest ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ExportError(f"{path}: not a detaccel export manifest (format is not {FORMAT!r})")
    missing = [key for key in REQUIRED_KEYS if key not in manifest]
    if missing:
        raise ExportError(f"{path}: incomplete manifest (no {', '.join(missing)}); export again")
    return manifest


def _graph(directory: Path, manifest: dict[str, Any], name: str, inputs: Sequence[str]) -> Any:
    """An ONNX Runtime session of graph ``name``, refused unless it is the file the manifest lists."""
    from detaccel.models.backbones import onnx_session

    path = directory / name
    listed = manifest["graphs"].get(name)
    if not isinstance(listed, dict) or "sha256" not in listed:
        raise ExportError(f"{directory / MANIFEST}: lists no graph {name}")
    if not path.is_file():
        raise ExportError(f"{path}: missing (the manifest lists it)")
    if file_digest(path) != listed["sha256"]:
        raise ExportError(
            f"{path}: not the graph {MANIFEST} was written with (its SHA-256 differs); export again"
        )
    try:
        session = onnx_session(str(path))
    except Exception as error:  # ONNX Runtime's own errors say what is wrong with the graph
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ExportError(f"{path}: ONNX Runtime cannot load it ({reason})") from None
    found = [item.name for item in session.get_inputs()]
    if found != list(inputs):
        raise ExportError(f"{path}: inputs {found}, expected {list(inputs)}")
    return session


def load_exported(directory: str | Path, config: Any = None, overrides: Sequence[str] = ()) -> tuple:
    """``(config, model, class_names)`` of an export directory, as :func:`load_detector` gives them.

    The model is the manifest's detector with its backbone, objectness head and RoI head running
    the exported graphs (inference on the CPU only). With ``config``, its data and eval sections are
    used and its architecture must be the manifest's; without it, the manifest's configuration with
    ``overrides`` applied (test-time settings: scales, the proposal cap, post-processing).
    """
    from detaccel.config import config_from_dict
    from detaccel.engine.loading import loading_configs
    from detaccel.models import build_detector

    directory = Path(directory)
    manifest = read_manifest(directory)
    if overrides and config is not None:
        raise ValueError("load_exported: pass overrides in the configuration or alone, not both")
    try:
        saved = config_from_dict(copy.deepcopy(manifest["config"]))
        config, built = loading_configs(manifest["config"], saved, config, overrides, str(directory))
    except CheckpointError:
        raise
    except ValueError as error:
        raise ExportError(f"{directory / MANIFEST}: {error}") from None
    class_names = tuple(manifest["class_names"])
    # The weights are the graphs': nothing to read or initialise from files.
    built.backbone.pretrained, built.backbone.weights, built.backbone.runtime = None, None, "torch"
    model = build_detector(built, len(class_names), class_names)
    shapes = manifest.get("box_shapes") or {}
    if shapes.get("sizes"):
        model.box_shapes.set(shapes["sizes"], shapes["scale"])
    outputs = list(manifest["backbone_outputs"])
    if outputs[:1] != ["out"]:
        raise ExportError(f"{directory / MANIFEST}: backbone_outputs must start with 'out', got {outputs}")
    model.backbone.use_graph(_graph(directory, manifest, "backbone.onnx", ["images"]), outputs[1:])
    if (model.objectness is None) != (manifest["objectness_stage"] is None):
        raise ExportError(f"{directory / MANIFEST}: objectness_stage does not fit its configuration")
    if model.objectness is not None:
        model.objectness.use_graph(_graph(directory, manifest, "objectness.onnx", ["map"]))
    model.roi_features.use_graph(_graph(directory, manifest, "roi_features.onnx", ["map", "rois"]))
    head = _graph(directory, manifest, "head.onnx", ["pooled"])
    missing = [name for name in HEAD_OUTPUTS if name not in {item.name for item in head.get_outputs()}]
    if missing:
        raise ExportError(f"{directory / 'head.onnx'}: no output {missing[0]} (an older export?)")
    model.roi_heads.use_graph(head)
    if (config.proposals.name, config.proposals.params) != (saved.proposals.name, saved.proposals.params):
        model.set_proposal_generator(config.proposals.name, config.proposals.params)
    config.backbone.runtime = "onnxruntime"
    model.eval()
    return config, model, class_names
