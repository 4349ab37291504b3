"""``detaccel eval``: run a trained (or compressed) checkpoint on a split; write detections and metrics."""

from __future__ import annotations

import argparse
from pathlib import Path

from detaccel.commands._model_args import add_config_arguments, as_command_errors


def load_detector(checkpoint_path: str, config=None):
    """``(config, model, class_names)`` from a checkpoint; with ``config``, its data and eval sections
    are used and its architecture must be the checkpoint's (truncated-SVD ranks aside)."""
    from detaccel.config import config_from_dict, config_to_dict
    from detaccel.engine import CheckpointError, load_checkpoint, load_model_state
    from detaccel.engine.trainer import check_same_architecture
    from detaccel.models import build_detector

    checkpoint = load_checkpoint(checkpoint_path)
    try:
        saved = config_from_dict(checkpoint["config"])
    except ValueError as error:
        raise CheckpointError(f"{checkpoint_path}: invalid configuration inside ({error})") from None
    if config is None:
        config = saved
    else:
        compare = config_to_dict(saved)
        compare["head"]["svd_ranks"] = config.head.svd_ranks
        check_same_architecture(compare, config, str(checkpoint_path))
        config.head.svd_ranks = dict(saved.head.svd_ranks)
    config.backbone.weights = None  # the checkpoint holds every weight
    model = build_detector(config, len(checkpoint["class_names"]))
    load_model_state(model, checkpoint["model"], str(checkpoint_path))
    model.eval()
    return config, model, tuple(checkpoint["class_names"])


def run(args: argparse.Namespace) -> int:
    from detaccel.config import load_config
    from detaccel.engine import CheckpointError, init_distributed, shutdown_distributed
    from detaccel.engine.data import load_split, with_proposals
    from detaccel.engine.evaluator import evaluate_model

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
