#!/usr/bin/env python
"""The backbone graph of a trained detector in float32 and in each int8 form ONNX Runtime offers, timed.

Exports the checkpoint's backbone (``detaccel export``'s ``backbone.onnx``), quantises it with
ONNX Runtime's ``quantize_static`` in the forms worth asking about on a CPU — QDQ and QOperator,
unsigned or signed 8-bit activations, ``reduce_range`` or not — calibrated on training images,
then runs every graph on the same test images taking turns image by image on ``--threads``
threads: the median time of each, its ratio to the float graph and the cosine similarity of its
map to the float one. ``detaccel export --int8-backbone`` uses the QDQ form with unsigned 8-bit
activations and signed 8-bit weights, which this measured best on the project's EfficientNet-Lite0.

    python tools/bench_backbone_int8.py --checkpoint outputs/.../model_final.pth --out outputs/bench_int8
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from detaccel.data.io import read_image
from detaccel.engine import init_distributed
from detaccel.engine.data import load_split
from detaccel.engine.export import export_detector
from detaccel.engine.loading import load_detector
from detaccel.engine.quantize import calibration_batches, quantize_backbone
from detaccel.models.backbones import onnx_session


def forms() -> dict[str, dict]:
    from onnxruntime.quantization import QuantFormat, QuantType

    u8, s8 = QuantType.QUInt8, QuantType.QInt8
    return {
        "qdq u8 act, s8 weights, reduce_range": dict(quant_format=QuantFormat.QDQ, activation_type=u8,
                                                     weight_type=s8, reduce_range=True),
        "qdq u8 act, s8 weights": dict(quant_format=QuantFormat.QDQ, activation_type=u8, weight_type=s8),
        "qdq s8 act, s8 weights": dict(quant_format=QuantFormat.QDQ, activation_type=s8, weight_type=s8),
        "qdq u8 act, u8 weights": dict(quant_format=QuantFormat.QDQ, activation_type=u8, weight_type=u8),
        "qoperator u8 act, s8 weights, reduce_range": dict(
            quant_format=QuantFormat.QOperator, activation_type=u8, weight_type=s8, reduce_range=True),
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a trained detaccel checkpoint")
    parser.add_argument("--calibration-images", type=int, default=32, help="training images (default: 32)")
    parser.add_argument("--images", type=int, default=20, help="test images timed (default: 20)")
    parser.add_argument("--repeat", type=int, default=2, help="passes over the test images (default: 2)")
    parser.add_argument("--threads", type=int, default=1, help="threads (default: 1)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config, model, _ = load_detector(args.checkpoint)
    info = init_distributed("cpu")
    train = list(load_split(config, config.data.train_split, info).records)
    test = list(load_split(config, config.data.test_split, info).records)[: args.images]
    step = max(1, len(train) // args.calibration_images)
    calibration = calibration_batches(
        model, [read_image(r.file_path) for r in train[::step]][: args.calibration_images]
    )
    inputs = calibration_batches(model, [read_image(r.file_path) for r in test])

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        export_detector(model, config, Path(scratch) / "export")
        float_graph = Path(scratch) / "export" / "backbone.onnx"
        sessions = {"float32": onnx_session(str(float_graph))}
        for name, form in forms().items():
            path = Path(scratch) / f"{len(sessions)}.onnx"
            quantize_backbone(float_graph, path, calibration, **form)
            sessions[name] = onnx_session(str(path))
        reference = [sessions["float32"].run(None, {"images": x})[0] for x in inputs]
        times: dict[str, list[float]] = {name: [] for name in sessions}
        for _ in range(args.repeat):
            for index, batch in enumerate(inputs):
                order = list(sessions) if index % 2 == 0 else list(reversed(sessions))
                for name in order:
                    started = time.perf_counter()
                    sessions[name].run(None, {"images": batch})
                    times[name].append(time.perf_counter() - started)
        rows = []
        for name, session in sessions.items():
            maps = [session.run(None, {"images": x})[0] for x in inputs]
            cosine = np.mean([float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b))) for a, b in
                              zip(maps, reference, strict=True)])  # fmt: skip
            median = float(np.median(times[name]))
            rows.append({"form": name, "ms": 1e3 * median, "cosine": float(cosine)})
    base = rows[0]["ms"]
    for row in rows:
        row["speedup_vs_float32"] = base / row["ms"]
        print(
            f"{row['form']:>44}: {row['ms']:6.1f} ms  {row['speedup_vs_float32']:.2f}x  "
            f"cosine {row['cosine']:.4f}"
        )
    result = {"checkpoint": args.checkpoint, "threads": args.threads, "images": len(inputs), "forms": rows}
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
