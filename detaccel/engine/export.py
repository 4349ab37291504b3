"""Writing a trained detector's dense parts as ONNX graphs, with a manifest of what runs between them.

:func:`export_detector` writes, into one directory:

- ``backbone.onnx``: ``images`` ``[N, 3, H, W]`` (normalised, any size) to the RoI map ``out`` and
  every other backbone stage the proposal slot reads (batch norm folded, as at inference);
- ``objectness.onnx`` (a detector trained with R²-CNN's learned head): that stage's map to the
  objectness logits (and box sides);
- ``roi_features.onnx``: the map ``out`` and RoIs ``[K, 5]`` (``(batch index, x1, y1, x2, y2)`` in
  inclusive pixels of the resized image) to their pooled features ``[K, D]``, in ONNX's own
  ``MaxRoiPool`` (Fast R-CNN, SPPnet's levels) or ``RoiAlign``;
- ``head.onnx``: pooled RoI features ``[K, D]`` (any ``K``) to fc7 features, class logits, box
  deltas and detection scores (fc6/fc7 as trained or compressed, then the predictor);
- ``manifest.json``: classes, normalisation, test scales, RoI features and their parameters, the
  proposal generator's resolved settings, box weights, post-processing, typical shapes, the whole
  resolved configuration, and each graph's SHA-256 (:mod:`detaccel.engine.exported` runs detection
  from the directory alone and refuses a graph that is not the one written with its manifest).

R²-CNN's grouping and ranking and the per-class NMS run between the graphs in the project's
operators. Each graph is checked against the eager model on an example when written.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from detaccel.config.loader import resolved_config_dict
from detaccel.config.schema import Config
from detaccel.models.backbones import ONNX_OPSET, export_stages, onnx_runtime, write_onnx
from detaccel.models.detector import RegionDetector
from detaccel.models.proposal_generator import FeatureProposals

TOLERANCE = 1e-3
FORMAT = "detaccel-onnx"
MANIFEST = "manifest.json"
HEAD_OUTPUTS = ("features", "class_logits", "box_deltas", "class_scores")


class ExportError(ValueError):
    """A part of the detector that cannot be written as ONNX, or whose graph disagrees with it."""


class _HeadGraph(nn.Module):
    def __init__(self, model: RegionDetector) -> None:
        super().__init__()
        self.head, self.predictor = model.head, model.predictor

    def forward(self, pooled: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features = self.head(pooled)
        logits, deltas = self.predictor(features)
        return features, logits, deltas, self.predictor.detection_scores(features, logits)


class _RoIFeaturesGraph(nn.Module):
    """The RoI feature extractor's pooling, traced in the operators the ONNX exporter knows."""

    def __init__(self, roi_features: nn.Module) -> None:
        super().__init__()
        self.roi_features = roi_features

    def forward(self, feature_map: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        return self.roi_features._pool(feature_map, rois, exporting=True)


def _example_rois(count: int, height: int, width: int) -> torch.Tensor:
    """``count`` RoIs ``[K, 5]`` of image 0 inside a ``height`` x ``width`` image, all sizes."""
    generator = torch.Generator().manual_seed(0)
    corners = torch.rand(count, 2, 2, generator=generator) * torch.tensor([width - 1.0, height - 1.0])
    low, high = corners.min(dim=1).values, corners.max(dim=1).values
    return torch.cat((torch.zeros(count, 1), low, high), dim=1)


class _ObjectnessGraph(nn.Module):
    """The objectness head's branches (its layers, without its saved stage name)."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.conv, self.logits = head.conv, head.logits
        self.side_conv, self.sides = head.side_conv, head.sides

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        logits = self.logits(torch.relu(self.conv(feature_map)))
        if self.sides is None:
            return logits
        return torch.cat((logits, self.sides(torch.relu(self.side_conv(feature_map)))), dim=1)


def _export(
    module: nn.Module,
    example: torch.Tensor | tuple[torch.Tensor, ...],
    path: Path,
    inputs: list[str],
    outputs: list[str],
    axes: dict[str, dict[int, str]],
) -> None:
    try:
        write_onnx(module, example, str(path), inputs, outputs, axes)
    except Exception as error:  # the exporter's own errors name the operator it could not write
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ExportError(f"{path.name}: cannot be written as ONNX ({reason})") from None


def _check(path: Path, feeds: dict[str, np.ndarray], expected: list[torch.Tensor]) -> float:
    """The largest difference between the graph's outputs on ``feeds`` and ``expected``."""
    runtime = onnx_runtime()
    session = runtime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, feeds)
    worst = max(
        float(np.abs(o - e.numpy()).max()) if e.numel() else 0.0
        for o, e in zip(outputs, expected, strict=True)
    )
    if not worst <= TOLERANCE * max(1.0, max(float(e.abs().max()) for e in expected if e.numel())):
        raise ExportError(f"{path.name}: ONNX Runtime's outputs differ from the model's by {worst:.3g}")
    return worst


# Below it the int8 maps are not the float ones (saturated products gave 0.60); above it, the
# detector's mAP decides whether the int8 backbone is good enough (measure it with eval).
MIN_INT8_COSINE = 0.9


def _quantize_backbone(model: RegionDetector, path: Path, images: Sequence[np.ndarray]) -> dict[str, Any]:
    """Replace the float graph at ``path`` by its int8 quantisation; how it was made and how close it is."""
    from detaccel.engine.quantize import (
        QuantizationError,
        calibration_batches,
        map_agreement,
        quantize_backbone,
    )
    from detaccel.models.backbones import onnx_session

    batches = calibration_batches(model, images)
    float_path = path.with_name("backbone.float32.onnx")
    path.replace(float_path)
    try:
        quantize_backbone(float_path, path, batches)
        agreement = map_agreement(onnx_session(str(float_path)), onnx_session(str(path)), batches)
    except QuantizationError as error:
        raise ExportError(str(error)) from None
    finally:
        float_path.unlink(missing_ok=True)
    if agreement["worst_cosine"] < MIN_INT8_COSINE:
        raise ExportError(
            f"backbone.onnx: the int8 maps differ from the float ones (cosine "
            f"{agreement['worst_cosine']:.3f} < {MIN_INT8_COSINE}); export without int8"
        )
    return {"precision": "int8", "calibration_images": len(batches), **agreement}


def file_digest(path: Path) -> str:
    """The SHA-256 of a file's bytes, in hex."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_detector(
    model: RegionDetector,
    config: Config,
    out_dir: str | Path,
    int8_calibration: Sequence[np.ndarray] | None = None,
) -> dict[str, Any]:
    """Write ``model``'s graphs and manifest into ``out_dir`` (see the module docstring); the manifest.

    With ``int8_calibration`` (RGB ``uint8`` images, e.g. from the training split), ``backbone.onnx``
    is the float graph quantised to int8 (:mod:`detaccel.engine.quantize`) with those images'
    activation ranges; the manifest records how close its maps are to the float ones.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    if model.roi_features.per_region:
        raise ExportError("R-CNN runs the backbone on every warped region; export a SPPnet or Fast R-CNN")
    from detaccel.models.packed import PackedLinear

    int8_layers = [name for name, m in model.named_modules() if isinstance(m, PackedLinear) and m.int8]
    if int8_layers:
        raise ExportError(
            f"head.onnx: {', '.join(int8_layers)} hold int8 weights (compress --auto's int8 choice), which "
            "PyTorch's dynamically quantised linear cannot be written as ONNX; export a head compressed "
            "without int8 (SVD ranks, pruning) and quantise the backbone with --int8-backbone"
        )
    source = model.proposal_generator
    stages = (source.stage,) if isinstance(source, FeatureProposals) and source.stage != "out" else ()
    size = int(config.data.test_scale)
    images = torch.randn(1, 3, size, size * 4 // 3)
    differences = {}
    with torch.no_grad():
        maps = model.backbone._torch_stages(images, stages)
        try:
            export_stages(model.backbone, stages, images, out_dir / "backbone.onnx")
        except Exception as error:
            raise ExportError(f"backbone.onnx: cannot be written as ONNX ({error})") from None
        names = ["out", *stages]
        differences["backbone.onnx"] = _check(
            out_dir / "backbone.onnx", {"images": images.numpy()}, [maps[n] for n in names]
        )
        backbone_precision: dict[str, Any] = {"precision": "float32"}
        if int8_calibration is not None:
            backbone_precision = _quantize_backbone(model, out_dir / "backbone.onnx", int8_calibration)
        if model.objectness is not None:
            feature_map = maps[model.objectness.stage]
            logits = model.objectness(feature_map)
            _export(
                _ObjectnessGraph(model.objectness),
                feature_map,
                out_dir / "objectness.onnx",
                ["map"],
                ["logits"],
                {
                    "map": {0: "batch", 2: "height", 3: "width"},
                    "logits": {0: "batch", 2: "height", 3: "width"},
                },
            )
            differences["objectness.onnx"] = _check(
                out_dir / "objectness.onnx", {"map": feature_map.numpy()}, [logits]
            )
        rois = _example_rois(9, images.shape[2], images.shape[3])
        _export(
            _RoIFeaturesGraph(model.roi_features),
            (maps["out"], rois),
            out_dir / "roi_features.onnx",
            ["map", "rois"],
            ["pooled"],
            {"map": {0: "batch", 2: "height", 3: "width"}, "rois": {0: "rois"}, "pooled": {0: "rois"}},
        )
        differences["roi_features.onnx"] = _check(
            out_dir / "roi_features.onnx",
            {"map": maps["out"].numpy(), "rois": rois.numpy()},
            [model.roi_features.pool(maps["out"], rois, model.backbone)],
        )
        pooled = torch.randn(7, model.roi_features.output_dim)
        graph = _HeadGraph(model)
        expected = list(graph(pooled))
        _export(
            graph,
            pooled,
            out_dir / "head.onnx",
            ["pooled"],
            list(HEAD_OUTPUTS),
            {name: {0: "rois"} for name in ("pooled", *HEAD_OUTPUTS)},
        )
        differences["head.onnx"] = _check(out_dir / "head.onnx", {"pooled": pooled.numpy()}, expected)
    resolved = resolved_config_dict(config)
    manifest = {
        "format": FORMAT,
        "opset": ONNX_OPSET,
        "graphs": {
            name: {"max_difference": value, "sha256": file_digest(out_dir / name)}
            for name, value in differences.items()
        },
        "backbone_precision": backbone_precision,
        "class_names": list(model.class_names or []),
        "family": model.family,
        "pixel_mean": list(model.pixel_mean),
        "pixel_std": list(model.pixel_std),
        "size_divisibility": model.size_divisibility,
        "backbone_stride": int(model.backbone.stride),
        "backbone_outputs": ["out", *stages],
        "objectness_stage": None if model.objectness is None else model.objectness.stage,
        "box_shapes": {"sizes": model.box_shapes.sizes, "scale": model.box_shapes.scale},
        "roi_features": {"type": config.roi_feature_type, **dataclasses.asdict(config.roi_features)},
        "box_weights": list(model.box_weights),
        "postprocess": dict(model.postprocess_options),
        "data": {
            key: resolved["data"][key] for key in ("test_scale", "test_scales", "max_size", "test_roi_size")
        },
        "proposals": resolved["proposals"],
        "uses_svm_scores": model.predictor.svm is not None,
        "config": resolved,
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest
