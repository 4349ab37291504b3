"""``detaccel eval``: run a trained (or compressed) checkpoint on a split; write its detections and metrics.

(``detaccel score`` scores result files that already exist, without a model.)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from detaccel.commands._model_args import (
    MODEL_HELP,
    add_config_arguments,
    add_generator_argument,
    add_runtime_argument,
    as_command_errors,
    default_eval_dir,
    inference_device,
    use_generator,
    use_runtime,
)


def run(args: argparse.Namespace) -> int:
    from detaccel.config import load_config
    from detaccel.engine import CheckpointError, init_distributed, shutdown_distributed
    from detaccel.engine.data import load_split, records_for_model
    from detaccel.engine.evaluator import evaluate_model
    from detaccel.engine.loading import load_detector

    with as_command_errors():
        overrides = args.overrides
        config = load_config(args.config, overrides) if args.config else None
        config, model, class_names = load_detector(args.checkpoint, config, () if args.config else overrides)
        generator = use_generator(model, config, args.generator)
        use_runtime(model, config, args.runtime)
        if generator != config.proposals.name:
            config.proposals.name, config.proposals.params = generator, {}
        info = init_distributed(inference_device(args.device, model))
        try:
            model.to(info.device)
            split = args.split or config.data.test_split
            if isinstance(config.data.classes, str) and config.data.classes in ("auto", "discover"):
                config.data.classes = list(class_names)  # the checkpoint's classes, in its order
            dataset = load_split(config, split, info)
            if tuple(dataset.class_names) != class_names:
                raise CheckpointError(
                    f"{args.checkpoint}: trained for classes {', '.join(class_names)}, "
                    f"but the dataset has {', '.join(dataset.class_names)}"
                )
            out = Path(args.out) if args.out else default_eval_dir(args.checkpoint, split)
            cache = Path(config.proposals.cache_dir) if config.proposals.cache_dir else out / "proposals"
            records = records_for_model(config, dataset, model, cache, info, not args.no_progress)
            evaluate_model(model, dataset, records, config, info, out, progress=not args.no_progress)
        finally:
            shutdown_distributed()
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="run a checkpoint on a dataset split: write its detections (VOC/COCO files) and metrics",
    )
    add_config_arguments(parser)
    add_generator_argument(parser)
    add_runtime_argument(parser)
    parser.add_argument("--checkpoint", required=True, help=MODEL_HELP)
    parser.add_argument("--split", help="dataset split (default: data.test_split)")
    parser.add_argument("--out", help="output directory (default: eval_<split> next to the checkpoint)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
