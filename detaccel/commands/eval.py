"""``detaccel eval``: run a trained (or compressed) checkpoint on a split; write detections and metrics."""

from __future__ import annotations

import argparse
from pathlib import Path

from detaccel.commands._model_args import add_config_arguments, as_command_errors


def run(args: argparse.Namespace) -> int:
    from detaccel.config import load_config
    from detaccel.engine import CheckpointError, init_distributed, shutdown_distributed
    from detaccel.engine.data import load_split, with_proposals
    from detaccel.engine.evaluator import evaluate_model
    from detaccel.engine.loading import load_detector

    with as_command_errors():
        config = load_config(args.config, args.overrides) if args.config else None
        config, model, class_names = load_detector(args.checkpoint, config)
        info = init_distributed(args.device)
        try:
            model.to(info.device)
            split = args.split or config.data.test_split
            dataset = load_split(config, split, info)
            if tuple(dataset.class_names) != class_names:
                raise CheckpointError(
                    f"{args.checkpoint}: trained for classes {', '.join(class_names)}, "
                    f"but the dataset has {', '.join(dataset.class_names)}"
                )
            out = Path(args.out) if args.out else Path(args.checkpoint).resolve().parent / f"eval_{split}"
            cache = Path(config.proposals.cache_dir) if config.proposals.cache_dir else out / "proposals"
            records = with_proposals(config, dataset, cache, info)
            evaluate_model(model, dataset, records, config, info, out, progress=not args.no_progress)
        finally:
            shutdown_distributed()
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval", help="evaluate a checkpoint: detections (VOC/COCO files) and metrics"
    )
    add_config_arguments(parser)
    parser.add_argument("--checkpoint", required=True, help="a detaccel checkpoint (trained or compressed)")
    parser.add_argument("--split", help="dataset split (default: data.test_split)")
    parser.add_argument("--out", help="output directory (default: eval_<split> next to the checkpoint)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
