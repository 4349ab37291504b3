#!/usr/bin/env python
"""Write docs/benchmarks.md (and the README's headline figures) from the runs' own results files.

``docs/results/runs.yaml`` lists each claim: its title, the command that measures it, the
``source`` file that command writes (a ``results.json`` or ``profile.json``) and the kind of
table it makes. A source newer than its copy in ``docs/results/`` is copied in first, so
rerunning a command and then this script updates the tables; the copies are what the tables
are made from (and what git keeps).

    python tools/benchmark_tables.py            # copy newer sources, write the docs
    python tools/benchmark_tables.py --check    # exit 1 when the docs are not what the copies give
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from detaccel.benchmarks.peer import PEER_NAME
from detaccel.benchmarks.report import comparisons

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "docs" / "results" / "runs.yaml"
BENCHMARKS = ROOT / "docs" / "benchmarks.md"
README = ROOT / "README.md"
HEADLINE_START, HEADLINE_END = "<!-- headline figures: start -->", "<!-- headline figures: end -->"

READING = """\
Every table below is made by `python tools/benchmark_tables.py` from the results file of the
command above it (a copy is kept in `docs/results/`); rerun the command, then the script, to
update it. Times are means per image over the test images after warm-up images, end to end
from decoding the image to the final detections, on the CPU named with the table. Ratios are
always measured in one process on the same images (`vs` columns: ours over theirs for time,
ours over theirs for mAP). mAP is VOC07 11-point on the test split named. A target is stated
with the figure reached, met or not."""


def _ms(seconds: float) -> str:
    return f"{1e3 * seconds:.1f}"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    align = ["---" if i < 2 else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def bench_table(data: Mapping[str, Any], run: Mapping[str, Any]) -> tuple[list[str], dict[str, str]]:
    """A ``detaccel bench`` run: the comparisons it opens with, then every pair and the peer."""
    results, peer = data["results"], data.get("peer")
    headline = data["context"].get("headline")
    lines: list[str] = []
    for item in comparisons(results, headline, peer):
        lines += [f"**{item.title}**", "", *[f"- {line}" for line in item.lines], ""]
    header = ["detector", "proposals", "VOC07 mAP", "recall@0.5", "boxes/img", "ms/img", "proposals ms",
              "backbone ms", "head ms"]  # fmt: skip
    rows = []
    for r in results:
        stages = {name: stats["mean"] for name, stats in r["stages"].items()}
        name = r["detector"] + (f" ({r['variant']})" if r.get("variant") else "")
        rows.append([name, r["generator"], f"{r['voc07_mAP']:.3f}", f"{r['recall@0.50']:.3f}",
                     f"{r['proposals_per_image']:.0f}", _ms(r["seconds_per_image"]),
                     _ms(stages.get("proposals", 0)), _ms(stages.get("backbone", 0)),
                     _ms(stages.get("head", 0))])  # fmt: skip
    if peer:
        rows.append([peer["detector"], "its RPN", f"{peer['voc07_mAP']:.3f}", "", "",
                     _ms(peer["seconds_per_image"]), "", "", ""])  # fmt: skip
    lines += _table(header, rows)
    training = data.get("training") or {}
    if training:
        trained = ", ".join(
            f"{name} {t.get('iterations')} iterations in {t.get('train_seconds', t.get('seconds', 0)):.0f} s"
            for name, t in training.items()
        )
        lines += ["", f"Trained: {trained}."]
    return lines, bench_figures(results, headline, peer)


def _met(met: bool) -> str:
    return "met" if met else "not met"


def bench_figures(results: list, headline: str | None, peer: Mapping[str, Any] | None) -> dict[str, str]:
    """The headline sentences of a ``detaccel bench`` run: R²-CNN against selective search in the
    headline detector, and detaccel against the peer (as trained and in its fastest variant)."""
    find = {(r["detector"], r["generator"]): r for r in results}
    full, ss = find.get((headline, "r2cnn")), find.get((headline, "selective_search"))
    if full is None:
        return {}
    variants = [r for r in results if r.get("base") == headline and r["generator"] == "r2cnn"]
    fast = min([full, *variants], key=lambda r: r["seconds_per_image"])
    figures = {}
    if ss is not None:
        ratio, fast_ratio = full["voc07_mAP"] / ss["voc07_mAP"], fast["voc07_mAP"] / ss["voc07_mAP"]
        speedup = ss["seconds_per_image"] / fast["seconds_per_image"]
        figures["vs_selective_search"] = (
            f"{full['voc07_mAP']:.3f} mAP against {ss['voc07_mAP']:.3f} with selective search in its slot "
            f"({ratio:.2f}x; target ≥ 0.95x: {_met(ratio >= 0.95)}); {fast['detector']}: "
            f"{speedup:.1f}x less time per image (target ≥ 15x: {_met(speedup >= 15)}) at {fast_ratio:.2f}x "
            "selective search's mAP"
        )
    if peer is not None:
        map_ratio = fast["voc07_mAP"] / peer["voc07_mAP"]
        time_ratio = fast["seconds_per_image"] / peer["seconds_per_image"]
        figures["vs_peer"] = (
            f"{fast['detector']}: {fast['voc07_mAP']:.3f} mAP against the peer's {peer['voc07_mAP']:.3f} at "
            f"{time_ratio:.2f}x its time (target ≥ 1x mAP at ≤ 0.5x time: "
            f"{_met(map_ratio >= 1 and time_ratio <= 0.5)}); as trained, "
            f"{full['seconds_per_image'] / peer['seconds_per_image']:.2f}x its time"
        )
    return figures


# The tool's entries: how the table names them, and the test scale they were scored at as they are.
SIDES = {"detaccel": ("", "as trained"), "detaccel_deployed": (" deployed", "as exported")}


def _vs_peer_figure(entry: Mapping[str, Any], peer: Mapping[str, Any]) -> str:
    met = entry["mAP_ratio_vs_torchvision"] >= 1 and entry["time_ratio_vs_torchvision"] <= 0.5
    return (
        f"{entry['voc07_mAP']:.3f} mAP against the peer's {peer['voc07_mAP']:.3f} at "
        f"{entry['time_ratio_vs_torchvision']:.2f}x its time (target ≥ 1x mAP at ≤ 0.5x time: "
        f"{'met' if met else 'not met'})"
    )


def vs_torchvision_table(data: Mapping[str, Any], run: Mapping[str, Any]) -> tuple[list[str], dict[str, str]]:
    """A ``tools/bench_vs_torchvision.py`` run: the peer and detaccel with each generator (and its
    deployed form, and other test scales, where the run scored them)."""
    peer = data.get("torchvision")
    header = ["detector", "proposals", "test scale", "iterations", "VOC07 mAP", "ms/img", "backbone ms",
              "boxes/img", "vs peer mAP", "vs peer time"]  # fmt: skip
    rows = []
    if peer:
        rows.append([PEER_NAME, "its RPN", "as trained", peer["iterations"], f"{peer['voc07_mAP']:.3f}",
                     _ms(peer["seconds_per_image"]), "", "", "1", "1"])  # fmt: skip
        for scale, entry in (peer.get("by_test_scale") or {}).items():
            rows.append([PEER_NAME, "its RPN", scale, "", f"{entry['voc07_mAP']:.3f}",
                         _ms(entry["seconds_per_image"]), "", "", "", ""])  # fmt: skip
    onnx_peer = data.get("torchvision_onnxruntime") or {}
    if "seconds_per_image" in onnx_peer:
        in_onnx = [f"{onnx_peer['voc07_mAP']:.3f}", _ms(onnx_peer["seconds_per_image"])]
        rows.append([f"{PEER_NAME} in ONNX Runtime", "its RPN", "as trained", "", *in_onnx, "", "", "", ""])
    figures = {}
    iterations = data["detaccel"]["iterations"]
    for side, (suffix, own_scale) in SIDES.items():
        ours = data.get(side) or {}
        scored = [(name, own_scale, entry) for name, entry in ours.items() if _scored(entry)]
        for scale, entries in (ours.get("by_test_scale") or {}).items():
            scored += [(name, scale, entry) for name, entry in entries.items() if _scored(entry)]
        for name, scale, entry in scored:
            ratios = ["", ""]
            if peer:
                map_ratio = entry["voc07_mAP"] / max(peer["voc07_mAP"], 1e-9)
                time_ratio = entry["seconds_per_image"] / peer["seconds_per_image"]
                ratios = [f"{map_ratio:.2f}x", f"{time_ratio:.2f}x"]
            backbone = entry["stages_ms"].get("backbone", 0)
            rows.append([f"detaccel {data['config'].split('/')[-1]}{suffix}", name, scale, iterations,
                         f"{entry['voc07_mAP']:.3f}", _ms(entry["seconds_per_image"]), f"{backbone:.1f}",
                         f"{entry['proposals_per_image']:.0f}", *ratios])  # fmt: skip
            key = "vs_peer" + suffix.replace(" ", "_")
            if peer and scale == own_scale and key not in figures:  # the configured generator first
                figures[key] = _vs_peer_figure(entry, peer)
    runtime = data.get("runtime", "torch")
    lines = _table(header, rows)
    lines += [
        "",
        f"{data['train_images']} training and {data['test_images']} test images, {data['seconds']:.0f} s "
        f"of training per side on {data['threads']} thread(s); detaccel's backbone in {runtime}.",
    ]
    if "export_error" in onnx_peer:
        lines.append(
            f"The peer by torchvision's own ONNX recipe (`torch.onnx.export`): {onnx_peer['export_error']}."
        )
    elif onnx_peer:
        lines.append(
            "The peer in ONNX Runtime: exported by torchvision's own recipe (`torch.onnx.export`, the whole "
            f"model), boxes within {onnx_peer['max_box_difference']:.2g} px of eager on two test images of "
            "different sizes; "
            "the ratios are against the peer as its users run it (eager)."
        )
    deployed = data.get("detaccel_deployed")
    if deployed and "search" in deployed:
        search, chosen = deployed["search"], deployed["search"]["chosen"]
        reference = search["reference"]
        lines.append(
            f"Deployed: the same model exported (`detaccel export --search {search['max_map_drop']:g}`), "
            f"run from the export directory in ONNX Runtime; the search chose the {chosen['precision']} "
            f"backbone (int8 calibrated on {deployed['int8_calibration_images']} training images), test "
            f"scale {chosen['test_scale']} and at most {chosen['max_test']} proposals: "
            f"{chosen['voc07_mAP']:.3f} mAP at {_ms(chosen['seconds_per_image'])} ms against the float "
            f"export as configured {reference['voc07_mAP']:.3f} at {_ms(reference['seconds_per_image'])} ms "
            f"on {search['validation_images']} images of {search['split']!r}."
        )
    elif deployed:
        settings = ", ".join(deployed.get("test_settings") or []) or "the trained ones"
        lines.append(
            f"Deployed: the same model exported (`detaccel export`), its backbone in int8 calibrated on "
            f"{deployed['int8_calibration_images']} training images, run from the export directory in ONNX "
            f"Runtime; test-time settings: {settings}."
        )
    return lines, figures


def _scored(entry: Any) -> bool:
    return isinstance(entry, dict) and "voc07_mAP" in entry


def profile_table(data: Mapping[str, Any], run: Mapping[str, Any]) -> tuple[list[str], dict[str, str]]:
    """A ``detaccel profile --baseline-*`` run: both sides per stage, taking turns on the same images."""
    header = ["run", "VOC07 mAP", "ms/img", "backbone ms", "proposals ms", "head ms", "speed-up"]
    rows = []
    labels = run.get("labels", {})
    for label, entry in (("baseline", data["baseline"]), ("profiled", data)):
        stages = {name: stats["mean"] for name, stats in entry["stages"].items()}
        speedup = f"{data['speedup_vs_baseline']:.2f}x" if label == "profiled" else "1"
        rows.append([labels.get(label, f"{label}: {entry['generator']}"), f"{entry['voc07_mAP']:.3f}",
                     _ms(entry["seconds_per_image"]), _ms(stages.get("backbone", 0)),
                     _ms(stages.get("proposals", 0)), _ms(stages.get("head", 0)), speedup])  # fmt: skip
    backbone = data["baseline"]["stages"]["backbone"]["mean"] / data["stages"]["backbone"]["mean"]
    lines = [*_table(header, rows), "", f"Backbone pass: {backbone:.2f}x faster; {data['images']} images."]
    return lines, {"backbone": f"{backbone:.2f}x the backbone pass, {data['speedup_vs_baseline']:.2f}x whole"}


def ops_table(data: Mapping[str, Any], run: Mapping[str, Any]) -> tuple[list[str], dict[str, str]]:
    """``tools/bench_ops.py``: each operator case, detaccel against torchvision."""
    rows = [
        [r["case"], f"{r['detaccel_ms']:.2f}", f"{r['torchvision_ms']:.2f}", f"{r['speedup']:.2f}x",
         "yes" if r["outputs_agree"] else "NO"]
        for r in data["results"] if "speedup" in r
    ]  # fmt: skip
    machine = data["machine"]
    lines = [*_table(["case", "detaccel ms", "torchvision ms", "speed-up", "outputs agree"], rows), ""]
    lines.append(f"{machine['processor']}, {machine['threads']} threads, torch {machine['torch']}.")
    return lines, {}


def int8_forms_table(data: Mapping[str, Any], run: Mapping[str, Any]) -> tuple[list[str], dict[str, str]]:
    """``tools/bench_backbone_int8.py``: the backbone graph in float32 and each int8 form, taking turns."""
    rows = [[r["form"], f"{r['ms']:.1f}", f"{r['speedup_vs_float32']:.2f}x", f"{r['cosine']:.4f}"]
            for r in data["forms"]]  # fmt: skip
    lines = [*_table(["graph", "ms/img", "vs float32", "cosine to float32 map"], rows), ""]
    lines.append(f"{data['images']} test images, {data['threads']} thread(s), median time per image.")
    return lines, {}


KINDS: dict[str, Callable[[Mapping[str, Any], Mapping[str, Any]], tuple[list[str], dict[str, str]]]] = {
    "bench": bench_table,
    "vs_torchvision": vs_torchvision_table,
    "profile": profile_table,
    "ops": ops_table,
    "int8_forms": int8_forms_table,
}


def collect(run: Mapping[str, Any], refresh: bool = True) -> Path:
    """The copy a run's table is made from, refreshed (with ``refresh``) from its source when that is
    newer."""
    copy = ROOT / "docs" / "results" / f"{run['id']}.json"
    source = ROOT / run["source"]
    if refresh and source.is_file() and (not copy.is_file() or source.stat().st_mtime > copy.stat().st_mtime):
        shutil.copyfile(source, copy)
        print(f"{run['id']}: copied {run['source']}", file=sys.stderr)
    if not copy.is_file():
        raise SystemExit(f"{run['id']}: neither {run['source']} nor {copy.relative_to(ROOT)} exists")
    return copy


def render(runs: list[Mapping[str, Any]], refresh: bool = True) -> tuple[str, list[str]]:
    """The text of docs/benchmarks.md and the README's headline lines (``refresh``: copy newer
    sources in first)."""
    body, headlines = [], []
    for run in runs:
        data = json.loads(collect(run, refresh).read_text())
        lines, figures = KINDS[run["kind"]](data, run)
        body += [f"## {run['title']}", "", "```bash", run["command"].rstrip(), "```", ""]
        if run.get("about"):
            body += [run["about"].strip(), ""]
        body += [*lines, "", f"Machine: {run['machine']}. Results: `docs/results/{run['id']}.json`.", ""]
        for key, template in (run.get("headline") or {}).items():
            if key in figures:
                headlines.append(
                    f"- {template.format(figures[key])} ([table](docs/benchmarks.md#{_anchor(run)}))"
                )
    text = "\n".join(["# Benchmarks", "", READING, "", *body])
    return text.rstrip() + "\n", headlines


def _anchor(run: Mapping[str, Any]) -> str:
    keep = "".join(c for c in run["title"].lower() if c.isalnum() or c in " -")
    return keep.replace(" ", "-")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the docs are up to date")
    args = parser.parse_args()
    runs = yaml.safe_load(RUNS.read_text())
    text, headlines = render(runs, refresh=not args.check)
    readme = README.read_text()
    start, end = readme.index(HEADLINE_START), readme.index(HEADLINE_END)
    new_readme = readme[: start + len(HEADLINE_START)] + "\n" + "\n".join(headlines) + "\n" + readme[end:]
    if args.check:
        stale = [p.name for p, new in ((BENCHMARKS, text), (README, new_readme)) if p.read_text() != new]
        if stale:
            print(f"not up to date: {', '.join(stale)} (run tools/benchmark_tables.py)", file=sys.stderr)
            return 1
        return 0
    BENCHMARKS.write_text(text)
    README.write_text(new_readme)
    print(f"wrote {BENCHMARKS.relative_to(ROOT)} ({len(text.splitlines())} lines) and the README's headlines")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
