"""``detaccel compress``: truncated-SVD factorisation of a checkpoint's fully connected layers."""

from __future__ import annotations

import argparse


def parse_ranks(text: str) -> dict[str, int]:
    """``"fc6=1024,fc7=256"`` -> ``{"fc6": 1024, "fc7": 256}``."""
    from detaccel.cli import CommandError

    ranks: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep:
            raise CommandError(f"--svd: expected LAYER=RANK items such as fc6=1024, got {item!r}")
        try:
            ranks[name.strip()] = int(value)
        except ValueError:
            raise CommandError(f"--svd: rank of {name.strip()!r} must be an integer, got {value!r}") from None
    if not ranks:
        raise CommandError("--svd: no layers given")
    return ranks


def run(args: argparse.Namespace) -> int:
    from detaccel.cli import CommandError
    from detaccel.commands._model_args import as_command_errors
    from detaccel.engine import load_checkpoint, save_checkpoint
    from detaccel.engine.loading import load_detector
    from detaccel.engine.trainer import checkpoint_payload
    from detaccel.models.svd import compress_head

    if (args.svd is None) == (args.svd_energy is None):
        raise CommandError("give exactly one of --svd LAYER=RANK,... and --svd-energy FRACTION")
    with as_command_errors():
        config, model, class_names = load_detector(args.checkpoint)
        saved = load_checkpoint(args.checkpoint)
        iteration, categories = int(saved.get("iteration", 0)), saved.get("categories")
        layers = args.layers.split(",") if args.layers else ["fc6", "fc7"]
        try:
            if args.svd is not None:
                report = compress_head(model.head, ranks=parse_ranks(args.svd))
            else:
                report = compress_head(model.head, energy=args.svd_energy, layers=layers)
        except ValueError as error:
            raise CommandError(str(error)) from None
        config.head.svd_ranks = {**config.head.svd_ranks, **{r["layer"]: r["rank"] for r in report}}
        save_checkpoint(
            args.output, checkpoint_payload(config, class_names, model, iteration, categories=categories)
        )
    print(
        f"{'layer':6s} {'shape':>14s} {'rank':>6s} {'params before':>14s} {'after':>12s} "
        f"{'MACs/RoI before':>16s} {'after':>12s} {'energy kept':>12s}"
    )
    totals = [0, 0, 0, 0]
    for row in report:
        print(
            f"{row['layer']:6s} {row['out_features']:>6d}x{row['in_features']:<7d} {row['rank']:>6d} "
            f"{row['params_before']:>14,d} {row['params_after']:>12,d} "
            f"{row['macs_before']:>16,d} {row['macs_after']:>12,d} {row['energy']:>12.4f}"
        )
        for i, key in enumerate(("params_before", "params_after", "macs_before", "macs_after")):
            totals[i] += row[key]
    print(
        f"{'total':6s} {'':>14s} {'':>6s} {totals[0]:>14,d} {totals[1]:>12,d} "
        f"{totals[2]:>16,d} {totals[3]:>12,d}"
        f"   ({totals[2] / max(totals[3], 1):.2f}x fewer multiply-adds)"
    )
    print(f"compressed checkpoint -> {args.output}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "compress", help="replace fc layers by their truncated-SVD factorisation (faster detection head)"
    )
    parser.add_argument("checkpoint", help="a trained detaccel checkpoint")
    parser.add_argument("--svd", help="ranks per layer, e.g. fc6=1024,fc7=256")
    parser.add_argument(
        "--svd-energy",
        type=float,
        help="instead of ranks: keep the fewest singular values retaining this fraction of sum(sigma^2)",
    )
    parser.add_argument("--layers", help="layers for --svd-energy (default: fc6,fc7)")
    parser.add_argument("-o", "--output", required=True, help="compressed checkpoint to write")
    parser.set_defaults(func=run)
