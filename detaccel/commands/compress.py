"""``detaccel compress``: truncated-SVD factorisation of a checkpoint's fully connected layers, by hand
(``--svd``, ``--svd-energy``) or searched under an accuracy budget (``--auto``)."""

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


def run_auto(args: argparse.Namespace) -> int:
    """Search the compression of the head within ``--max-map-drop`` on a validation split."""
    from pathlib import Path

    from detaccel.cli import CommandError
    from detaccel.commands._model_args import as_command_errors
    from detaccel.compression import AutoCompression, BudgetNotMet
    from detaccel.compression import run_auto as search_and_save
    from detaccel.compression.auto import proposal_cache_dir, validation_split_records
    from detaccel.config import load_config
    from detaccel.engine import load_checkpoint, save_checkpoint
    from detaccel.engine.data import load_split, records_for_model
    from detaccel.engine.loading import load_detector
    from detaccel.engine.trainer import checkpoint_payload

    if args.svd is not None or args.svd_energy is not None:
        raise CommandError("--auto searches the ranks itself: leave out --svd and --svd-energy")
    if args.evaluations < 1:
        raise CommandError(f"--evaluations must be >= 1, got {args.evaluations}")
    options = AutoCompression(
        objective=args.objective,
        max_map_drop=args.max_map_drop,
        evaluations=args.evaluations,
        seed=args.seed,
        time_limit=args.time_limit,
        finetune_iters=args.finetune_iters,
        progress=not args.no_progress,
    )
    if options.finetune_iters < 0:
        raise CommandError(f"--finetune-iters must be >= 0, got {options.finetune_iters}")
    if options.max_map_drop < 0:
        raise CommandError(f"--max-map-drop must be >= 0 VOC07 points, got {options.max_map_drop}")
    out_dir = Path(args.output)
    with as_command_errors():
        overrides = args.overrides
        config = load_config(args.config, overrides) if args.config else None
        config, model, class_names = load_detector(args.checkpoint, config, () if args.config else overrides)
        saved = load_checkpoint(args.checkpoint)
        iteration, categories = int(saved.get("iteration", 0)), saved.get("categories")
        if isinstance(config.data.classes, str) and config.data.classes in ("auto", "discover"):
            config.data.classes = list(class_names)
        if args.val_split == config.data.test_split:
            raise CommandError(
                f"--val-split {args.val_split!r} is the test split: the search must not see it "
                "(give a validation split, e.g. one made by `detaccel data split`)"
            )
        cache_dir = proposal_cache_dir(config, out_dir)
        progress = not args.no_progress
        validation = validation_split_records(
            config, model, args.val_split, args.val_images, args.seed, cache_dir, progress
        )
        train = []
        if options.finetune_iters > 0:
            train_set = load_split(config, config.data.train_split)
            train = records_for_model(config, train_set, model, cache_dir, progress=progress)
            if not model.proposal_generator.cacheable:
                raise CommandError(
                    "--finetune-iters needs proposals that depend on the image alone (cached); "
                    "this model computes them from its own features"
                )
        test = []
        if not args.no_test:
            test_set = load_split(config, config.data.test_split)
            test = records_for_model(config, test_set, model, cache_dir, progress=progress)

        def save(path, chosen_config, chosen_model):
            payload = checkpoint_payload(
                chosen_config, class_names, chosen_model, iteration, categories=categories
            )
            return save_checkpoint(path, payload)

        try:
            search_and_save(model, config, class_names, validation, test, options, out_dir, save, train)
        except BudgetNotMet as error:
            raise CommandError(str(error)) from None
        except ValueError as error:
            raise CommandError(str(error)) from None
    print(f"compressed checkpoint -> {out_dir / 'model_compressed.pth'}")
    summary = out_dir / "summary.md"
    if summary.is_file():
        print(summary.read_text(encoding="utf-8"))
    return 0


def run(args: argparse.Namespace) -> int:
    from detaccel.cli import CommandError

    if args.auto:
        return run_auto(args)
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
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        help="compressed checkpoint to write (with --auto: a directory for it, search.jsonl, pareto.png, "
        "summary.md; an existing search.jsonl there is resumed)",
    )
    auto = parser.add_argument_group("automatic compression (--auto)")
    auto.add_argument(
        "--auto",
        action="store_true",
        help="search per-layer SVD rank, magnitude pruning and int8 of fc6, fc7 and the predictor for the "
        "smallest or fastest head within --max-map-drop, on cached validation RoI features",
    )
    auto.add_argument("--config", help="a YAML configuration for the dataset (default: the checkpoint's)")
    auto.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    auto.add_argument(
        "--objective",
        choices=("size", "latency"),
        default="size",
        help="size: bytes of head + predictor in the checkpoint; latency: their measured CPU time",
    )
    auto.add_argument(
        "--max-map-drop",
        type=float,
        default=1.0,
        help="VOC07 points the validation mAP may lose (default: 1.0; 0 keeps the model)",
    )
    auto.add_argument("--evaluations", type=int, default=60, help="candidates to evaluate (default: 60)")
    auto.add_argument("--time-limit", type=float, help="stop the search after this many seconds")
    auto.add_argument(
        "--finetune-iters",
        type=int,
        default=0,
        help="fine-tune the chosen head this many iterations on training RoIs pooled once (pruned weights "
        "held at zero, int8 applied after); kept when its validation mAP is not lower",
    )
    auto.add_argument("--val-split", default="val", help="the validation split searched on (default: val)")
    auto.add_argument("--val-images", type=int, help="use this many validation images (seeded sample)")
    auto.add_argument("--seed", type=int, default=0, help="seed of the sampler and the image sample")
    auto.add_argument("--no-test", action="store_true", help="do not score the result on the test split")
    auto.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)
