"""``detaccel train``: train a detector from a configuration (also under ``torchrun`` for DDP)."""

from __future__ import annotations

import argparse
from pathlib import Path

from detaccel.commands._model_args import add_config_arguments, as_command_errors, default_out_dir


def run(args: argparse.Namespace) -> int:
    from detaccel.cli import CommandError
    from detaccel.config import load_config
    from detaccel.engine import Trainer, init_distributed, shutdown_distributed

    if not args.config:
        raise CommandError("train needs --config FILE")
    with as_command_errors():
        config = load_config(args.config, args.overrides)
        if args.no_eval:
            config.train.eval_after_training = False
        info = init_distributed(args.device)
        try:
            out = Path(args.out) if args.out else default_out_dir(args.config)
            resume = args.resume if args.resume not in (None, "") else None
            if resume == "last":
                resume = True
            Trainer(config, out, info, resume=resume, progress=not args.no_progress).train()
        finally:
            shutdown_distributed()
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="train an R-CNN, SPPnet or Fast R-CNN detector (torchrun for several processes)"
    )
    add_config_arguments(parser)
    parser.add_argument("--out", help="output directory (default: outputs/<config name>)")
    parser.add_argument(
        "--resume",
        nargs="?",
        const="last",
        help="continue from the output directory's last checkpoint, or from the checkpoint given",
    )
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    parser.add_argument("--no-eval", action="store_true", help="skip the evaluation after training")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
