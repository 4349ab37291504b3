#!/usr/bin/env python
"""detaccel's detector against torchvision's Faster R-CNN on the same backbone, split, seconds and threads.

Both start from the backbone a detaccel configuration names (for example the ImageNet
EfficientNet-Lite0 cut at stride 16): detaccel trains the configured family (Fast R-CNN,
SPPnet) on its proposals; torchvision's ``FasterRCNN`` puts its own RPN and RoIAlign box head
on a fresh copy of the same backbone, trained with its reference recipe (SGD, momentum 0.9,
weight decay 1e-4, learning rate 0.02 per 16 images scaled to the batch, linear warm-up,
decay by 0.1 at 16/26 and 22/26 of the run, horizontal flips). detaccel's own schedule
(``train.steps`` out of ``train.max_iter``) is likewise placed at its fractions of the seconds
when the seconds end the run first. Each trains for the same number of seconds on the training split with the
same number of threads; once both are trained they are scored with the same VOC07 code on the
same test split and timed per image, decoding to detections, in this one process, in
``--timing-rounds`` alternating rounds (detaccel, the peer, detaccel, ...): each side's fastest
round is reported, so that a change of the machine's load during the run does not fall on one side
only. ``--runtime onnxruntime`` scores detaccel with its backbone run by ONNX Runtime; ``--deploy N``
also scores its deployed form (exported, int8 backbone calibrated on N training images, run from the
export directory, with ``--deploy-set`` test-time settings) beside it in the same rounds;
``--peer-onnx`` also scores the peer exported by torchvision's own ONNX recipe, in ONNX Runtime. Every
round must give the same detections on every image as the first (else the run stops,
naming the side, generator and image); quality figures come from the first round, only the times
from the fastest. ``--test-scales`` scores both trained models again at other shorter sides (a speed/accuracy
curve of each).

    python tools/bench_vs_torchvision.py --config configs/fast_rcnn_raccoon.yaml --seconds 600 \\
        --out outputs/vs_torchvision_raccoon
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detaccel.allocator import reuse_freed_memory
from detaccel.benchmarks.detection import LoadedDetector, PairRun
from detaccel.benchmarks.peer import (
    OnnxPeer,
    build_peer,
    export_peer,
    load_peer,
    save_peer,
    score_peer,
    train_peer,
)
from detaccel.config import load_config
from detaccel.data.io import read_image
from detaccel.engine import DistInfo, Trainer
from detaccel.engine.data import load_split
from detaccel.evaluation import Detections
from detaccel.serialization import json_safe


def score_detaccel(
    model: torch.nn.Module,
    config: Any,
    class_names: tuple[str, ...],
    generator: str,
    records: list,
    warmup: int,
) -> dict[str, Any]:
    """VOC07 mAP, proposal recall and time per image (with its stages) of the trained detaccel model."""
    loaded = LoadedDetector(config.model.family, config, model, class_names)
    run = PairRun(loaded, generator, warmup)
    for record in [*records[:warmup], *records]:
        run.step(record)
    figures = run.figures(records, float("nan"))
    print(
        f"detaccel + {generator} at {config.data.test_scale}: VOC07 mAP {figures['voc07_mAP']:.3f}, "
        f"{1e3 * figures['seconds_per_image']:.1f} ms/image",
        file=sys.stderr,
    )
    kept = {
        key: figures[key]
        for key in ("voc07_mAP", "seconds_per_image", "recall@0.50", "AR@100", "proposals_per_image")
    } | {"stages_ms": {k: 1e3 * v["mean"] for k, v in figures["stages"].items()}}
    return kept, run.detections


class SameDetections:
    """The detections of each (side, generator, scale) in the first scoring round, against which every
    later round is checked: a round whose detections differ on an image stops the run, naming it."""

    def __init__(self) -> None:
        self.first: dict[tuple, dict[Any, Detections]] = {}

    def check(self, key: tuple, detections: dict[Any, Detections]) -> None:
        first = self.first.setdefault(key, detections)
        for image_id, found in detections.items():
            expected = first.get(image_id)
            if expected is None or not _same(expected, found):
                side, generator, scale = key
                raise RoundMismatch(
                    f"{side} with {generator} at test scale {scale}: image {image_id!r} gave other "
                    "detections than in the first scoring round (the model or its proposal slot changed "
                    "between rounds)"
                )


class RoundMismatch(RuntimeError):
    """A scoring round gave detections that differ from the first round's."""


def _same(a: Detections, b: Detections) -> bool:
    """Whether two images' detections agree: the same labels, boxes and scores to float rounding."""
    boxes_a, boxes_b = np.asarray(a.boxes), np.asarray(b.boxes)
    if boxes_a.shape != boxes_b.shape or not np.array_equal(np.asarray(a.labels), np.asarray(b.labels)):
        return False
    scores_a, scores_b = np.asarray(a.scores), np.asarray(b.scores)
    return np.allclose(boxes_a, boxes_b, atol=1e-3) and np.allclose(scores_a, scores_b, atol=1e-5)


def score_all_detaccel(
    model: torch.nn.Module,
    config: Any,
    class_names: tuple[str, ...],
    generators: list[str],
    given: dict[str, Any],
    test_scales: list[int],
    records: list,
    warmup: int,
    rounds: SameDetections,
    side: str = "detaccel",
) -> dict[str, Any]:
    """detaccel's figures with each generator, at the trained test scale and at each of ``test_scales``;
    each one's detections checked against the first round's (``rounds``, under the name ``side``)."""
    scored: dict[str, Any] = {}
    for name in generators:
        params = given.get(name, config.proposals.params if name == config.proposals.name else {})
        model.set_proposal_generator(name, params)
        scored[name], detections = score_detaccel(model, config, class_names, name, records, warmup)
        rounds.check((side, name, config.data.test_scale), detections)
        for scale in test_scales:
            scaled = copy.deepcopy(config)
            scaled.data.test_scale = scale
            model.configure_inference(scaled)
            figures, detections = score_detaccel(model, scaled, class_names, name, records, warmup)
            rounds.check((side, name, scale), detections)
            scored.setdefault("by_test_scale", {}).setdefault(scale, {})[name] = figures
        model.configure_inference(config)
    return scored


def deployed_form(
    model: torch.nn.Module,
    config: Any,
    class_names: tuple[str, ...],
    args: argparse.Namespace,
) -> tuple[torch.nn.Module, Any, list[str], dict[str, Any]]:
    """``(model, config, generators, figures)`` of the trained model exported to ``OUT/deployed`` with an
    int8 backbone calibrated on ``--deploy`` training images (with ``--deploy-search``, the fastest form
    within that budget on ``--deploy-val-images`` of ``--deploy-val-split``), loaded back from the export
    with the ``--deploy-set`` settings."""
    from detaccel.engine.deploy_search import search_deployment, search_records
    from detaccel.engine.export import export_detector
    from detaccel.engine.exported import load_exported
    from detaccel.engine.quantize import calibration_images

    out = Path(args.out) / "deployed"
    calibration = calibration_images(config, args.deploy)
    exported = copy.deepcopy(config)
    exported.backbone.runtime = "torch"
    figures: dict[str, Any] = {"export": str(out), "int8_calibration_images": args.deploy}
    if args.deploy_search is None:
        precision = export_detector(model, exported, out, calibration)["backbone_precision"]
        print(
            f"deployed form: int8 backbone, cosine to the float maps {precision['cosine']:.4f}",
            file=sys.stderr,
        )
    else:
        validation = search_records(config, args.deploy_val_split, args.deploy_val_images, config.train.seed)
        search = search_deployment(
            model, exported, class_names, validation, calibration, args.deploy_search, out
        )
        figures["search"] = {"split": args.deploy_val_split, **search}
        print(f"deployed form: chosen {search['chosen']}", file=sys.stderr)
    deployed_config, deployed, _ = load_exported(out, overrides=args.deploy_set)
    figures["test_settings"] = args.deploy_set
    return deployed, deployed_config, [deployed_config.proposals.name], figures


PEER_ONNX_TOLERANCE = 0.5  # pixels: the exported peer's boxes against eager's on two test images


def peer_in_onnx(
    peer: torch.nn.Module, records: list, path: Path, results: dict[str, Any]
) -> OnnxPeer | None:
    """The peer exported by torchvision's recipe and run in ONNX Runtime, checked on the first test image
    and on one of another size; ``None`` (with the reason in ``results``) where it does not export or its
    graph does not give eager's detections."""
    sizes = {}
    for record in records:
        sizes.setdefault((record.height, record.width), record)
    examples = [read_image(r.file_path) for r in list(sizes.values())[:2]]
    entry = results["torchvision_onnxruntime"] = {}
    try:
        entry["max_box_difference"] = difference = export_peer(peer, path, examples)
    except Exception as error:  # the exporter's own message says what it could not write
        entry["export_error"] = str(error).strip().splitlines()[0]
        print(f"torchvision FasterRCNN: not exported to ONNX ({entry['export_error']})", file=sys.stderr)
        return None
    if not difference <= PEER_ONNX_TOLERANCE:
        entry["export_error"] = (
            f"the exported graph's detections differ from eager's on an image of another size than the one "
            f"it was traced on (by {difference:.3g} px, or in number): not scored"
        )
        print(f"torchvision FasterRCNN in ONNX: {entry['export_error']}", file=sys.stderr)
        return None
    print(f"torchvision FasterRCNN in ONNX: boxes within {difference:.3g} px of eager", file=sys.stderr)
    return OnnxPeer(path)


def score_all_peer(
    peer: torch.nn.Module,
    test_scales: list[int],
    records: list,
    class_names: tuple[str, ...],
    warmup: int,
    rounds: SameDetections,
) -> dict[str, Any]:
    """The peer's figures at its trained sizes and at each of ``test_scales`` (detections checked against
    the first round's)."""
    trained_sizes = peer.transform.min_size
    scored, detections = score_peer(peer, records, class_names, warmup)
    rounds.check(("torchvision", "its RPN", trained_sizes), detections)
    print(
        f"torchvision: VOC07 mAP {scored['voc07_mAP']:.3f}, {1e3 * scored['seconds_per_image']:.1f} ms/image",
        file=sys.stderr,
    )
    for scale in test_scales:
        peer.transform.min_size = (scale,)
        at_scale, detections = score_peer(peer, records, class_names, warmup)
        rounds.check(("torchvision", "its RPN", scale), detections)
        scored.setdefault("by_test_scale", {})[scale] = at_scale
        print(
            f"torchvision at {scale}: VOC07 mAP {at_scale['voc07_mAP']:.3f}, "
            f"{1e3 * at_scale['seconds_per_image']:.1f} ms/image",
            file=sys.stderr,
        )
    peer.transform.min_size = trained_sizes
    return scored


# The figures of an entry that are times: taken from its fastest round (the rest from the first).
TIME_KEYS = ("seconds_per_image", "stages_ms")


def keep_fastest(kept: dict[str, Any], scored: dict[str, Any]) -> None:
    """Merge a scoring round ``scored`` into ``kept``, in place. An entry (a dict with
    ``seconds_per_image``) keeps its quality figures from the first round it was seen in and its times
    (:data:`TIME_KEYS`) from its fastest round; groups of entries (the generators, ``by_test_scale``)
    are merged entry by entry."""
    if "seconds_per_image" in scored:
        if "seconds_per_image" not in kept:
            kept.update({key: value for key, value in scored.items() if key != "by_test_scale"})
        elif scored["seconds_per_image"] < kept["seconds_per_image"]:
            kept.update({key: scored[key] for key in TIME_KEYS if key in scored})
        scored = {key: value for key, value in scored.items() if key == "by_test_scale"}
    for key, value in scored.items():
        if isinstance(value, dict):
            keep_fastest(kept.setdefault(key, {}), value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config", required=True, help="the detaccel configuration (dataset, backbone, family)"
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--seconds", type=float, default=600.0, help="training seconds of each side")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of both sides (default: 2)")
    parser.add_argument("--warmup", type=int, default=2, help="test images run first and not timed")
    parser.add_argument(
        "--generators",
        default=None,
        help="comma-separated generators to test detaccel with (default: the configuration's)",
    )
    parser.add_argument(
        "--generator-params",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help='parameters of a tested generator, e.g. r2cnn=\'{"reduction": "abs"}\' (repeatable)',
    )
    parser.add_argument(
        "--test-scales",
        default="",
        help="comma-separated shorter sides at which both trained models are also scored, e.g. 320,384",
    )
    parser.add_argument("--skip-peer", action="store_true", help="train and score detaccel only")
    parser.add_argument(
        "--deploy-search",
        type=float,
        metavar="POINTS",
        help="choose the deployed form (backbone precision, test scale, proposal cap) as `detaccel export "
        "--search POINTS` does, on --deploy-val-split (never the test split)",
    )
    parser.add_argument(
        "--deploy-val-split", default="val", help="the split the search runs on (default: val)"
    )
    parser.add_argument(
        "--deploy-val-images", type=int, default=30, help="images of it the search runs on (default: 30)"
    )
    parser.add_argument(
        "--peer-onnx",
        action="store_true",
        help="also score the peer exported to ONNX by torchvision's own recipe and run in ONNX Runtime",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue detaccel's training from the last checkpoint in OUT/detaccel (one whose seconds "
        "are spent is scored at once) and take the peer trained before from OUT/peer/model.pth",
    )
    parser.add_argument(
        "--runtime",
        choices=("torch", "onnxruntime"),
        default="torch",
        help="where detaccel's backbone runs when scored: eager PyTorch or ONNX Runtime (default: torch)",
    )
    parser.add_argument(
        "--deploy",
        type=int,
        metavar="IMAGES",
        help="also score detaccel's deployed form: the trained model exported (detaccel export) with its "
        "backbone in int8 calibrated on this many training images, run from the export directory",
    )
    parser.add_argument(
        "--deploy-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a test-time setting of the deployed form, e.g. proposals.max_test=100 (repeatable)",
    )
    parser.add_argument(
        "--timing-rounds",
        type=int,
        default=2,
        help="alternating scoring rounds of both trained models; each side's fastest is kept (default: 2)",
    )
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    reuse_freed_memory()  # as the detaccel command does (detaccel.allocator)
    if args.deploy_search is not None and args.deploy is None:
        parser.error("--deploy-search: give --deploy IMAGES (the int8 calibration images) too")
    if args.timing_rounds < 1:
        parser.error("--timing-rounds: expected at least 1")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = load_config(args.config, [*args.overrides, f"train.max_seconds={args.seconds}"])
    config.train.eval_after_training = False
    train_set = load_split(config, config.data.train_split)
    if args.deploy_search is not None and args.deploy_val_split == config.data.test_split:
        parser.error(
            f"--deploy-val-split {args.deploy_val_split!r} is the test split: the search must not see it"
        )
    test_set = load_split(config, config.data.test_split)
    test_records = list(test_set.records)
    class_names = tuple(train_set.class_names)
    results: dict[str, Any] = {
        "config": args.config,
        "overrides": args.overrides,
        "seconds": args.seconds,
        "threads": args.threads,
        "train_images": len(train_set),
        "test_images": len(test_records),
    }
    print(f"detaccel {config.model.family}: training for {args.seconds:.0f} s", file=sys.stderr)
    trained = Trainer(config, out / "detaccel", DistInfo(), progress=True, resume=args.resume or None).train()
    model, config = trained["model"].eval(), trained["config"]
    model.backbone.set_runtime(args.runtime)
    config.backbone.runtime = results["runtime"] = args.runtime
    results["detaccel"] = {
        "iterations": trained["total_iterations"],
        "train_seconds": trained["train_seconds"],
    }
    generators = args.generators.split(",") if args.generators else [config.proposals.name]
    given = {}
    for item in args.generator_params:
        key, _, value = item.partition("=")
        given[key] = json.loads(value)
    results["generator_params"] = given
    test_scales = [int(s) for s in args.test_scales.split(",") if s.strip()]
    sides = {"detaccel": (model, config, generators)}
    if args.deploy is not None:
        *deployed, results["detaccel_deployed"] = deployed_form(model, config, class_names, args)
        sides["detaccel_deployed"] = tuple(deployed)
    peer = None
    if not args.skip_peer:
        peer = build_peer(config, len(class_names))
        saved = out / "peer" / "model.pth"
        if args.resume and saved.is_file():
            print(f"torchvision FasterRCNN: trained before, {saved}", file=sys.stderr)
            results["torchvision"] = load_peer(peer, saved)
        else:
            print(f"torchvision FasterRCNN: training for {args.seconds:.0f} s", file=sys.stderr)
            results["torchvision"] = train_peer(
                peer, list(train_set.records), args.seconds, config.train.images_per_batch, config.train.seed
            )
            save_peer(peer, saved, results["torchvision"])
    onnx_peer = None
    if peer is not None and args.peer_onnx:
        onnx_peer = peer_in_onnx(peer, test_records, out / "peer.onnx", results)
    rounds = SameDetections()
    for round_index in range(args.timing_rounds):
        print(f"scoring, round {round_index + 1} of {args.timing_rounds}", file=sys.stderr)
        try:
            for side, (side_model, side_config, side_generators) in sides.items():
                ours = score_all_detaccel(
                    side_model,
                    side_config,
                    class_names,
                    side_generators,
                    given,
                    test_scales,
                    test_records,
                    args.warmup,
                    rounds,
                    side,
                )
                keep_fastest(results[side], ours)
            if peer is not None:
                theirs = score_all_peer(peer, test_scales, test_records, class_names, args.warmup, rounds)
                keep_fastest(results["torchvision"], theirs)
            if onnx_peer is not None:
                theirs, detections = score_peer(onnx_peer, test_records, class_names, args.warmup)
                rounds.check(("torchvision in onnxruntime", "its RPN", "trained"), detections)
                keep_fastest(results["torchvision_onnxruntime"], theirs)
        except RoundMismatch as error:
            print(f"bench_vs_torchvision: scoring round {round_index + 1}: {error}", file=sys.stderr)
            return 1
    if peer is not None:
        for side, (_, _, side_generators) in sides.items():
            for name in side_generators:
                ours = results[side][name]
                ours["mAP_ratio_vs_torchvision"] = ours["voc07_mAP"] / max(
                    results["torchvision"]["voc07_mAP"], 1e-9
                )
                ours["time_ratio_vs_torchvision"] = (
                    ours["seconds_per_image"] / results["torchvision"]["seconds_per_image"]
                )
                if onnx_peer is not None:
                    ours["time_ratio_vs_torchvision_onnxruntime"] = (
                        ours["seconds_per_image"] / results["torchvision_onnxruntime"]["seconds_per_image"]
                    )
    (out / "results.json").write_text(json.dumps(json_safe(results), indent=2) + "\n")
    print(json.dumps(json_safe(results), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
