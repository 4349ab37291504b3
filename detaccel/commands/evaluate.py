"""``detaccel evaluate``: score detection or proposal files against a dataset split."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from detaccel.commands._dataset_args import add_dataset_arguments, load_from_args, skipped_line
from detaccel.serialization import json_safe


def _fmt(value: float) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def _score_detections(dataset, path: Path, metrics: list[str]) -> dict[str, Any]:
    from detaccel.evaluation import (
        dataset_ground_truth,
        evaluate_coco_results,
        evaluate_detections,
        read_coco_detections,
        read_coco_results,
        read_voc_detections,
    )

    if path.suffix == ".json":
        results: dict[str, Any] = {}
        if "coco" in metrics:
            results["coco"] = evaluate_coco_results(
                dataset.records,
                read_coco_results(path),
                dataset.class_names,
                ground_truth=dataset_ground_truth(dataset),
                category_ids=dataset.category_ids,
            )
        voc_metrics = [m for m in metrics if m != "coco"]
        if voc_metrics:
            detections = read_coco_detections(path, dataset.records, dataset.category_ids)
            results.update(evaluate_detections(dataset, detections, voc_metrics))
        return {m: results[m] for m in metrics}
    detections = read_voc_detections(path, dataset.records, dataset.class_names, dataset.split)
    return evaluate_detections(dataset, detections, metrics)


def _print_detection_results(results: dict[str, Any]) -> None:
    for metric, result in results.items():
        if metric == "coco":
            print("COCO box AP (IoU 0.50:0.95):")
            print(
                "  "
                + "  ".join(f"{k} {_fmt(result[k])}" for k in ("AP", "AP50", "AP75", "APs", "APm", "APl"))
            )
            for name, ap in result["AP_per_class"].items():
                print(f"  {name:20s} {_fmt(ap)}")
            continue
        title = "VOC2007 11-point" if metric == "voc07" else "VOC2010+ area"
        print(f"{title} AP (IoU {result['iou_threshold']:g}): mAP {_fmt(result['mAP'])}")
        for name, ap in result["AP"].items():
            print(
                f"  {name:20s} {_fmt(ap)}  ({result['num_positives'][name]} positives, "
                f"{result['num_detections'][name]} detections, recall {_fmt(result['recall'][name])})"
            )


def _print_proposal_results(result: dict[str, Any]) -> None:
    print(
        f"proposals: {result['num_gt']} objects in {result['num_images']} images, "
        f"{result['mean_proposals']:.1f} proposals per image"
        + (f" (at most {result['max_proposals']} kept)" if result["max_proposals"] else "")
    )
    recalls = [k for k in result if k.startswith("recall@")]
    print("  " + "  ".join(f"{k} {_fmt(result[k])}" for k in recalls) + f"  AR {_fmt(result['AR'])}")
    cap = result["max_proposals"]
    at_k = [k for k in result if k.startswith("AR@") and not (cap and int(k[3:]) > cap)]
    if at_k:  # AR@k beyond the cap would repeat AR at the cap
        print("  " + "  ".join(f"{k} {_fmt(result[k])}" for k in at_k))
    curve = result["recall_curve"]
    print("  recall vs proposals kept:")
    thresholds = [k for k in curve if k != "num_proposals"]
    print("    " + f"{'kept':>6s}" + "".join(f"  IoU {t}" for t in thresholds))
    for i, count in enumerate(curve["num_proposals"]):
        print("    " + f"{count:6d}" + "".join(f"  {_fmt(curve[t][i]):>8s}" for t in thresholds))


def run(args: argparse.Namespace) -> int:
    from detaccel.cli import CommandError
    from detaccel.data import DatasetError
    from detaccel.evaluation import proposal_recall, read_proposals
    from detaccel.evaluation.evaluate import default_metrics

    if args.detections is None and args.proposals is None:
        raise CommandError("give --detections and/or --proposals to score")
    dataset = load_from_args(args, check_images=False)
    metrics = list(dict.fromkeys(args.metric)) if args.metric else list(default_metrics(dataset))
    report: dict[str, Any] = {"dataset": dataset.summary()}
    try:
        if args.detections is not None:
            report["detections"] = _score_detections(dataset, Path(args.detections), metrics)
        if args.proposals is not None:
            proposals = read_proposals(args.proposals, dataset.records)
            report["proposals"] = proposal_recall(
                dataset.records,
                proposals,
                iou_thresholds=args.iou_thresholds,
                max_proposals=args.max_proposals,
            )
    except (DatasetError, ValueError) as error:
        raise CommandError(str(error)) from None

    for result in report.get("detections", {}).values():
        result.pop("summary", None)
    if args.output:
        Path(args.output).write_text(json.dumps(json_safe(report), indent=2) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(json_safe(report), indent=2))
        return 0
    summary = report["dataset"]
    print(
        f"{dataset.format} dataset {dataset.root} split {dataset.split}: "
        f"{summary['images']} images, {summary['objects']} objects"
    )
    line = skipped_line(dataset)
    if line:
        print(line)
    if "detections" in report:
        _print_detection_results(report["detections"])
    if "proposals" in report:
        _print_proposal_results(report["proposals"])
    return 0


def register(subparsers) -> None:
    from detaccel.evaluation.evaluate import METRICS

    parser = subparsers.add_parser(
        "score",
        aliases=["evaluate"],
        help="score result files (VOC comp4 detections, a COCO results JSON, or proposals) against a "
        "dataset's annotations; runs no model (to run a checkpoint, use eval)",
    )
    add_dataset_arguments(parser)
    parser.add_argument(
        "--detections",
        help="a directory of <comp>_det_<split>_<class>.txt files (or one of them), or a COCO results .json",
    )
    parser.add_argument("--proposals", help="proposals as .npz or COCO-style results .json")
    parser.add_argument(
        "--metric",
        action="append",
        choices=METRICS,
        help="voc07 (11-point), voc10 (area, VOC2010+) or coco; repeatable "
        "(default: voc07 and voc10 for VOC datasets, coco for COCO datasets)",
    )
    parser.add_argument(
        "--iou-thresholds",
        type=float,
        nargs="+",
        default=[0.5, 0.7],
        help="IoU thresholds for proposal recall (default: 0.5 0.7)",
    )
    parser.add_argument("--max-proposals", type=int, help="proposals kept per image for recall and AR")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--output", help="also write the results as JSON to this file")
    parser.set_defaults(func=run)
