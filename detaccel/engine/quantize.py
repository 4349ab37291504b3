"""Static int8 quantisation of an exported backbone graph, calibrated on training images.

ONNX Runtime's ``quantize_static`` in QDQ form: weights signed 8-bit per output channel,
activations unsigned 8-bit with their ranges from calibration images (min/max), the form
``tools/bench_backbone_int8.py`` measures fastest and closest to the float maps on this project's
EfficientNet-Lite0 (docs/benchmarks.md): signed 8-bit activations ran no faster than float in ONNX
Runtime's CPU kernels, unsigned x unsigned several times slower, and ``reduce_range`` (7-bit
weights, against the saturation of 16-bit accumulators that AVX2 without VNNI can meet) as fast but
further from the float maps. The export refuses a quantised graph whose maps are not the float ones
(:data:`~detaccel.engine.export.MIN_INT8_COSINE`), which is how such saturation would show.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detaccel.models.detector import RegionDetector


class QuantizationError(ValueError):
    """Calibration without images, or a quantised graph that ONNX Runtime cannot write."""


def calibration_images(config: Any, count: int) -> list[np.ndarray]:
    """``count`` images (RGB ``uint8``) spread evenly over the configuration's training split."""
    from detaccel.data.io import read_image
    from detaccel.engine import init_distributed
    from detaccel.engine.data import load_split

    records = list(load_split(config, config.data.train_split, init_distributed("cpu")).records)
    step = max(1, len(records) // count)
    return [read_image(record.file_path) for record in records[::step][:count]]


def calibration_batches(model: RegionDetector, images: Iterable[np.ndarray]) -> list[np.ndarray]:
    """Each RGB ``uint8`` image as the backbone's input at inference: resized to the proposal scale,
    normalised, padded to the stride, ``[1, 3, H, W]`` float32."""
    from detaccel.data.transforms import batch_images

    batches = []
    for image in images:
        item = model.test_transform(image)[model.proposal_scale]
        batch, _ = batch_images([torch.from_numpy(item.image)], model.size_divisibility)
        batches.append(batch.float().numpy())
    return batches


def map_agreement(float_session: Any, int8_session: Any, batches: Sequence[np.ndarray]) -> dict[str, float]:
    """How close the int8 graph's maps are to the float graph's on ``batches``: the cosine similarity
    of each map (mean and worst over images and outputs) and the largest absolute difference relative
    to the float map's largest magnitude."""
    cosines, relative = [], []
    for batch in batches:
        feeds = {"images": batch}
        for expected, got in zip(float_session.run(None, feeds), int8_session.run(None, feeds), strict=True):
            a, b = expected.ravel().astype(np.float64), got.ravel().astype(np.float64)
            cosines.append(float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12)))
            relative.append(float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-12)))
    return {
        "cosine": float(np.mean(cosines)),
        "worst_cosine": min(cosines),
        "max_relative_difference": max(relative),
    }


def quantize_backbone(
    float_graph: Path, int8_graph: Path, batches: Sequence[np.ndarray], **form: Any
) -> None:
    """Write ``float_graph`` quantised to int8 at ``int8_graph``, calibrated on ``batches`` (the
    backbone's inputs, :func:`calibration_batches`), in the form of the module docstring; ``form``
    overrides ``quantize_static``'s options of it (``tools/bench_backbone_int8.py`` compares forms)."""
    import logging

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not batches:
        raise QuantizationError("int8 backbone: no calibration images")

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.remaining = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.remaining, None)
            return None if batch is None else {"images": batch}

    options = {
        "quant_format": QuantFormat.QDQ,
        "activation_type": QuantType.QUInt8,
        "weight_type": QuantType.QInt8,
        "per_channel": True,
        **form,
    }
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(float_graph), str(prepared), skip_symbolic_shape=True)
        level = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)  # one warning per depthwise bias otherwise
        try:
            quantize_static(str(prepared), str(int8_graph), Batches(), **options)
        except Exception as error:  # the quantiser's own message names the node it failed on
            raise QuantizationError(f"{int8_graph.name}: int8 quantisation failed ({error})") from None
        finally:
            logging.getLogger().setLevel(level)
