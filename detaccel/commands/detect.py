"""``detaccel detect``: run a trained detector on image files, folders, globs or videos; draw and record."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from detaccel.cli import CommandError
    from detaccel.commands._model_args import (
        as_command_errors,
        inference_device,
        model_path_exists,
        use_generator,
        use_runtime,
    )
    from detaccel.config import load_config
    from detaccel.data import DatasetError
    from detaccel.data.io import write_jpeg
    from detaccel.engine import init_distributed
    from detaccel.engine.detect import (
        InputError,
        draw_prediction,
        expand_inputs,
        is_video,
        iter_frames,
        prediction_record,
    )
    from detaccel.engine.loading import load_detector
    from detaccel.profiling import StageTimer

    if not model_path_exists(args.checkpoint):
        raise CommandError(f"--checkpoint {args.checkpoint}: no such file or export directory")
    if args.show_proposals < 0:
        raise CommandError("--show-proposals: expected a non-negative number")
    try:
        files = expand_inputs(args.inputs)
    except InputError as error:
        raise CommandError(str(error)) from None
    with as_command_errors():
        overrides = args.overrides
        config = load_config(args.config, overrides) if args.config else None
        config, model, class_names = load_detector(args.checkpoint, config, () if args.config else overrides)
    generator = use_generator(model, config, args.generator)
    use_runtime(model, config, args.runtime)
    device = init_distributed(inference_device(args.device, model)).device
    model.to(device).eval()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timer = StageTimer(device=device)
    failed: list[str] = []
    written = 0
    results_path = out / "detections.jsonl"
    print(
        f"detecting with {Path(args.checkpoint).name} ({config.model.family}, proposals: "
        f"{model.proposal_generator.describe()}) on {len(files)} input file(s)",
        file=sys.stderr,
    )
    with results_path.open("w", encoding="utf-8") as results, timer.activate():
        bar = tqdm(total=len(files), unit="file", disable=args.no_progress, dynamic_ncols=True)
        for path in files:
            frames = iter_frames(path)
            try:
                while True:
                    start = time.perf_counter()
                    try:
                        frame = next(frames)
                    except StopIteration:
                        break
                    decode = time.perf_counter() - start
                    with timer.image():
                        (prediction,) = model.predict([frame.image])
                    image = draw_prediction(
                        frame.image, prediction, class_names, args.score_threshold, args.show_proposals
                    )
                    target = out / f"{frame.name}.jpg"
                    write_jpeg(target, image)
                    stages = {"decode": decode, **timer.images[-1], "total": decode + timer.totals[-1]}
                    record = prediction_record(
                        frame, prediction, class_names, args.score_threshold, stages, target
                    )
                    results.write(json.dumps(record) + "\n")
                    written += 1
                    if is_video(path):
                        bar.set_postfix(frame=frame.index)
            except DatasetError as error:
                failed.append(str(path))
                tqdm.write(f"detaccel: skipped {error}", file=sys.stderr)
            bar.update(1)
        bar.close()
    print(
        f"{written} image(s) written to {out} ({results_path.name}, generator {generator})", file=sys.stderr
    )
    if failed:
        print(
            f"detaccel: error: {len(failed)} input(s) could not be read: {', '.join(failed)}", file=sys.stderr
        )
        return 1
    return 0


def register(subparsers) -> None:
    from detaccel.commands._model_args import (
        MODEL_HELP,
        add_config_arguments,
        add_generator_argument,
        add_runtime_argument,
    )

    parser = subparsers.add_parser(
        "detect",
        help="run a checkpoint on image files, folders, globs or videos: drawn JPEGs and detections.jsonl",
        description="Writes one JPEG per image (or video frame) with boxes, class names and scores drawn, "
        "and detections.jsonl with boxes in original pixels, scores, labels, the proposal count and "
        "per-stage milliseconds. An unreadable input is named and skipped; the exit code is then 1.",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image or video files, folders, globs")
    parser.add_argument("--checkpoint", required=True, help=MODEL_HELP)
    add_config_arguments(parser)
    add_generator_argument(parser)
    add_runtime_argument(parser)
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--score-threshold",
        type=float,
        default=0.5,
        help="draw and record detections scoring at least this (default: 0.5)",
    )
    parser.add_argument(
        "--show-proposals", type=int, default=0, metavar="N", help="also draw the first N proposals, in grey"
    )
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
