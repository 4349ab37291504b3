"""``detaccel proposals bench``: speed and recall of proposal generators on a dataset split."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

DEFAULT_GENERATORS = ("selective_search", "edge_boxes", "sliding_window", "r2cnn")
DEFAULT_DATA = Path("outputs/synthetic")


def parse_settings(items: list[str], generators: list[str]) -> dict[str, dict[str, Any]]:
    """``GENERATOR.PARAM=VALUE`` options (values read as YAML) grouped by generator."""
    from detaccel.cli import CommandError

    params: dict[str, dict[str, Any]] = {name: {} for name in generators}
    for item in items:
        key, sep, value = item.partition("=")
        name, dot, param = key.partition(".")
        if not sep or not dot or not param:
            raise CommandError(f"--set {item!r}: expected GENERATOR.PARAM=VALUE")
        if name not in params:
            raise CommandError(f"--set {item!r}: generator {name!r} is not among --generators")
        params[name][param] = yaml.safe_load(value)
    return params


def default_dataset(path: Path, split: str):
    """The embedded synthetic VOC set under ``path``, written there first if missing."""
    from detaccel.data import load_dataset, write_synthetic
    from detaccel.data.synthetic import VOC_DATASET_NAME

    root = path / "VOCdevkit" / VOC_DATASET_NAME
    if not (root / "ImageSets" / "Main" / f"{split}.txt").exists():
        print(f"writing the embedded synthetic dataset to {path}")
        root = write_synthetic(path, "voc", seed=0, overwrite=True)
    return load_dataset("voc", root, split, classes="synthetic")


def checkpoint_dataset(config: Any, split: str):
    """``split`` of the dataset a checkpoint's configuration names (where it was trained)."""
    from detaccel.cli import CommandError
    from detaccel.data import DatasetError
    from detaccel.engine.data import load_split

    try:
        return load_split(config, split)
    except (DatasetError, FileNotFoundError, ValueError) as error:
        raise CommandError(
            f"--checkpoint: the dataset it was trained on ({config.data.root}): {error}; "
            "give the dataset with --data-root"
        ) from None


def trained_r2cnn(checkpoint: str, params: dict[str, Any]) -> tuple[Any, Any]:
    """``(generator, the checkpoint's configuration)``: R²-CNN on a trained detector's features, with
    ``params`` on top.

    A detector trained on R²-CNN proposals of its own map gives its own proposal
    slot (its configuration's parameters and a learned objectness head, at its
    test scale); any other gives R²-CNN on its backbone at its test image size.
    """
    from detaccel.cli import CommandError
    from detaccel.config.r2cnn import generator_kwargs, r2cnn_settings
    from detaccel.engine import CheckpointError
    from detaccel.engine.loading import load_detector
    from detaccel.models.detector_proposals import DetectorProposals
    from detaccel.models.proposal_generator import reads_own_features
    from detaccel.proposals import build_generator

    try:
        config, model, _ = load_detector(checkpoint)
    except (CheckpointError, FileNotFoundError, ValueError) as error:
        raise CommandError(f"--checkpoint {checkpoint}: {error}") from None
    proposals = config.proposals
    if reads_own_features(proposals.name, proposals.params):
        saved = dict(proposals.params)
        if "shapes" in params:
            saved.pop("shapes_scale", None)  # shapes given here are pixels at this scale
        model.set_proposal_generator(proposals.name, {**saved, **params})
        return DetectorProposals(model), config
    size = {"short_side": config.data.test_scale, "max_side": config.data.max_size}
    kwargs = generator_kwargs(r2cnn_settings({**size, **params}, "--set r2cnn"))
    return build_generator("r2cnn", **{**kwargs, "backbone": model.backbone}), config


def run_bench(args: argparse.Namespace) -> int:
    from detaccel.benchmarks.proposals import markdown_table, run_proposal_benchmark
    from detaccel.cli import CommandError
    from detaccel.commands._dataset_args import load_from_args
    from detaccel.proposals import build_generator

    names = [n.strip() for n in args.generators.split(",") if n.strip()]
    params = parse_settings(args.set or [], names)
    if args.checkpoint is not None and "r2cnn" not in names:
        raise CommandError(
            "--checkpoint: only r2cnn reads a trained detector's features; add it to --generators"
        )
    generators, trained_config = {}, None
    try:
        for name in names:
            if name == "r2cnn" and args.checkpoint is not None:
                generators[name], trained_config = trained_r2cnn(args.checkpoint, params[name])
            else:
                generators[name] = build_generator(name, **params[name])
    except (TypeError, ValueError) as error:
        raise CommandError(str(error)) from None
    if args.data_root is not None:
        args.root = args.data_root
        if not Path(args.root).exists():
            raise CommandError(f"--data-root {args.root}: no such directory")
        dataset = load_from_args(args, check_images=False)
    elif trained_config is not None:
        dataset = checkpoint_dataset(trained_config, args.split)
    else:
        dataset = default_dataset(DEFAULT_DATA, args.split)
    records = list(dataset.records)[: args.max_images] if args.max_images else list(dataset.records)
    if not records:
        raise CommandError(f"split {args.split!r} has no images")
    print(
        f"{len(records)} images of {dataset.format} split {args.split!r} in {dataset.root}; "
        f"generators: {', '.join(names)}"
    )
    results = run_proposal_benchmark(generators, records, args.out, progress=not args.no_progress)
    print(markdown_table(results))
    print(f"written to {args.out}/results.json, results.md and recall.png")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("proposals", help="proposal generators: benchmark speed and recall")
    commands = parser.add_subparsers(dest="proposals_command", metavar="<subcommand>", required=True)
    bench = commands.add_parser(
        "bench",
        help="time and score proposal generators on a dataset split",
        description="Time per image, proposals per image, recall@0.5/0.7 and AR@100/300/1000 of each "
        "generator on the same images; writes results.json, results.md and recall.png.",
    )
    bench.add_argument(
        "--data-root",
        default=None,
        help="dataset directory (default: with --checkpoint, the dataset the detector was trained on; "
        f"else the embedded synthetic set, written to {DEFAULT_DATA} if missing)",
    )
    bench.add_argument(
        "--format", choices=("voc", "coco"), default="voc", help="dataset format (default: voc)"
    )
    bench.add_argument("--split", default="test", help="split to run on (default: test)")
    bench.add_argument(
        "--split-dir", default=None, help="VOC: the directory of <split>.txt files (default: ImageSets/Main)"
    )
    bench.add_argument(
        "--classes",
        default="auto",
        help="VOC class list: auto (default), voc, synthetic, discover or comma-separated names",
    )
    bench.add_argument("--skip-bad", action="store_true", help="skip bad images/objects with a warning")
    bench.add_argument("--allow-empty", action="store_true", help="VOC: accept images without objects")
    bench.add_argument(
        "--generators",
        default=",".join(DEFAULT_GENERATORS),
        help=f"comma-separated generator names (default: {','.join(DEFAULT_GENERATORS)})",
    )
    bench.add_argument(
        "--set",
        action="append",
        metavar="GEN.PARAM=VALUE",
        help="generator parameter, e.g. r2cnn.backbone=alexnet or edge_boxes.max_boxes=1000 (repeatable)",
    )
    bench.add_argument(
        "--checkpoint",
        default=None,
        help="a trained detector: r2cnn reads its backbone's map (stage r2cnn.layer, default its RoI map) "
        "at its test scale; a detector trained on R²-CNN of its own map gives its own proposal slot "
        "(its parameters and learned objectness head, --set r2cnn.* on top)",
    )
    bench.add_argument("--max-images", type=int, default=None, help="use only the first N images")
    bench.add_argument(
        "--out",
        type=Path,
        default=Path("outputs/proposals_bench"),
        help="output directory (default: outputs/proposals_bench)",
    )
    bench.add_argument("--no-progress", action="store_true", help="no progress bars")
    bench.set_defaults(func=run_bench)
