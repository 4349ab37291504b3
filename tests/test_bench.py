import json

import pytest
import yaml

from detaccel.benchmarks.report import comparisons, detection_speed_table
from detaccel.cli import main
from detaccel.profiling import DETECTION_STAGES
from tests.detector_configs import tiny_config_dict, tiny_dataset


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    root = tiny_dataset(tmp_path_factory.mktemp("data"))
    folder = tmp_path_factory.mktemp("configs")
    for family in ("fast_rcnn", "rcnn"):
        (folder / f"{family}.yaml").write_text(yaml.safe_dump(tiny_config_dict(root, family)))
    spec = {
        "images": 3,
        "warmup": 1,
        "detectors": {
            "fast_rcnn": {"config": str(folder / "fast_rcnn.yaml"), "overrides": ["train.max_seconds=2"]},
            "fast_rcnn_svd": {"from": "fast_rcnn", "svd": {"fc6": 4}},
            "fast_rcnn_top3": {
                "from": "fast_rcnn_svd",
                "overrides": ["proposals.max_test=3"],
                "generators": ["sliding_window"],
            },
            "fast_rcnn_auto": {
                "from": "fast_rcnn",
                "compress": {"max_map_drop": 100.0, "evaluations": 2},
                "generators": ["sliding_window"],
            },
            "fast_rcnn_deployed": {
                "from": "fast_rcnn",
                "export": {"search": 100.0, "int8_images": 2, "val_images": 3},
                "generators": ["sliding_window"],
            },
            "rcnn": {"config": str(folder / "rcnn.yaml"), "overrides": ["train.max_iter=2"]},
        },
        "peer": {"like": "fast_rcnn"},
        "generators": {
            "sliding_window": {"scales": [16, 32], "max_proposals": 50},
            "r2cnn": {"max_proposals": 4},
        },
    }
    path = folder / "matrix.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_bench_trains_runs_every_pair_and_writes_the_report(matrix, tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "--matrix", str(matrix), "--out", str(out), "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())["results"]
    pairs = {(r["detector"], r["generator"]) for r in results}
    assert pairs == {
        (d, g) for d in ("fast_rcnn", "fast_rcnn_svd", "rcnn") for g in ("sliding_window", "r2cnn")
    } | {(d, "sliding_window") for d in ("fast_rcnn_top3", "fast_rcnn_auto", "fast_rcnn_deployed")}  # limited
    for r in results:
        assert r["images"] == 3
        # An exported detector's head graph runs the predictor too: one stage, "head".
        stages = [
            s for s in DETECTION_STAGES if not (r["detector"] == "fast_rcnn_deployed" and s == "predictor")
        ]
        assert set(stages) <= set(r["stages"]), r["stages"].keys()
        assert 0 <= r["voc07_mAP"] <= 1 and r["seconds_per_image"] > 0 and r["peak_memory_mb"] >= 0
        top_level = sum(r["stages"][s]["mean"] for s in stages)
        assert top_level <= r["seconds_per_image"] * 1.0001
    r2cnn = next(r for r in results if r["detector"] == "fast_rcnn" and r["generator"] == "r2cnn")
    assert 0 < r2cnn["proposals_per_image"] <= 4  # the generator's cap holds on the detector's features
    top3 = next(r for r in results if r["detector"] == "fast_rcnn_top3")
    assert 0 < top3["proposals_per_image"] <= 3  # its test-time override, on the base's weights
    assert top3["base"] == "fast_rcnn" and top3["variant"] == "SVD fc6=4; proposals.max_test=3"
    assert top3["compressed"] is True
    auto = next(r for r in results if r["detector"] == "fast_rcnn_auto")
    assert auto["compressed"] is True and auto["variant"].startswith("compress --auto, latency")
    assert (out / "models" / "fast_rcnn_auto" / "model_compressed.pth").is_file()
    assert (out / "models" / "fast_rcnn_auto" / "search.jsonl").is_file()
    deployed = next(r for r in results if r["detector"] == "fast_rcnn_deployed")
    assert (
        deployed["base"] == "fast_rcnn"
        and "deployed form chosen by export --search 100" in deployed["variant"]
    )
    search = json.loads((out / "models" / "fast_rcnn_deployed" / "export" / "search.json").read_text())
    assert 1 <= search["validation_images"] <= 3 and search["chosen"] in search["candidates"]
    saved = json.loads((out / "results.json").read_text())
    peer = saved["peer"]
    assert peer["detector"] == "torchvision Faster R-CNN" and peer["like"] == "fast_rcnn"
    assert peer["iterations"] >= 1 and peer["images"] == 3 and 0 <= peer["voc07_mAP"] <= 1
    assert set(saved["training"]) == {"fast_rcnn", "rcnn", "torchvision Faster R-CNN"}
    assert saved["training"]["rcnn"]["iterations"] == 2
    report = (out / "report.md").read_text()
    assert "## Measured in this run" in report and "| fast_rcnn_svd | r2cnn |" in report
    assert "### detaccel against torchvision's Faster R-CNN" in report and "(vs_peer.png)" in report
    assert "### R²-CNN against selective search" not in report  # the run has no selective search
    assert "## Detection time on the same boxes" in report and "| sliding_window |" in report
    for png in ("stages.png", "speed_vs_map.png", "recall.png", "vs_peer.png", "compression.png"):
        assert (out / png).stat().st_size > 1000
    assert (out / "models" / "fast_rcnn" / "model_final.pth").is_file()
    assert not (out / "models" / "fast_rcnn" / "eval.json").exists()  # no separate test-split pass
    capsys.readouterr()
    # A trained checkpoint is used as it is, not trained again.
    trained = out / "models" / "fast_rcnn" / "model_final.pth"
    reuse = tmp_path / "reuse.yaml"
    reuse.write_text(
        yaml.safe_dump(
            {
                "images": 2,
                "detectors": {
                    "given": {"config": str(matrix.parent / "fast_rcnn.yaml"), "checkpoint": str(trained)}
                },
                "generators": {"r2cnn": {"max_proposals": 4}},
            }
        )
    )
    assert main(["bench", "--matrix", str(reuse), "--out", str(tmp_path / "reuse"), "--no-progress"]) == 0
    assert "training" not in capsys.readouterr().out
    assert not (tmp_path / "reuse" / "models").exists()

    # A second run reuses the trained models and finished pairs.
    assert main(["bench", "--matrix", str(matrix), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "training" not in printed and printed.count("reusing") == 10  # 9 pairs and the peer
    assert "compressing" not in printed and "choosing" not in printed  # searched head and export reused

    # Profile one of the trained detectors, with a Chrome trace.
    profile_out = tmp_path / "profile"
    code = main(
        [
            "profile",
            "--checkpoint",
            str(out / "models" / "fast_rcnn" / "model_final.pth"),
            "--generator",
            "sliding_window",
            "--images",
            "3",
            "--warmup",
            "1",
            "--trace",
            "--out",
            str(profile_out),
            "--no-progress",
        ]
    )
    assert code == 0
    assert set(DETECTION_STAGES) <= set(json.loads((profile_out / "profile.json").read_text())["stages"])
    assert "backbone" in (profile_out / "trace.json").read_text()

    # Against a baseline: the same checkpoint with another generator, taking turns on the same images.
    versus_out = tmp_path / "versus"
    checkpoint = str(out / "models" / "fast_rcnn" / "model_final.pth")
    args = ["--images", "3", "--warmup", "1", "--out", str(versus_out), "--no-progress"]
    code = main(["profile", "--checkpoint", checkpoint, "--generator", "r2cnn", "--baseline-generator",
                 "sliding_window", "--baseline-set", "proposals.max_test=7", *args])  # fmt: skip
    assert code == 0
    figures = json.loads((versus_out / "profile.json").read_text())
    baseline = figures["baseline"]
    assert figures["generator"] == "r2cnn" and baseline["generator"] == "sliding_window"
    assert figures["images"] == baseline["images"] == 3
    assert figures["stages"]["total"]["images"] == baseline["stages"]["total"]["images"] == 3
    assert 0 < baseline["proposals_per_image"] <= 7  # the baseline's own override
    expected = baseline["seconds_per_image"] / figures["seconds_per_image"]
    assert figures["speedup_vs_baseline"] == pytest.approx(expected)
    report = (versus_out / "stages.md").read_text()
    assert report.count("| stage |") == 2 and f"{expected:.2f}x" in report
    assert (versus_out / "stages.png").stat().st_size > 1000


def test_interleaved_runs_take_turns_and_warm_up_on_the_first_images():
    from types import SimpleNamespace

    from detaccel.benchmarks.detection import run_interleaved

    calls = []

    class Run:
        def __init__(self, name, warmup):
            self.name, self.timer, self.model = (
                name,
                SimpleNamespace(warmup=warmup),
                SimpleNamespace(device="cpu"),
            )

        def step(self, record):
            calls.append((self.name, record))

        def figures(self, records, peak):
            return {"name": self.name, "images": len(records)}

    figures = run_interleaved([Run("a", 2), Run("b", 1)], ["r0", "r1", "r2"], progress=False)
    assert figures == [{"name": "a", "images": 3}, {"name": "b", "images": 3}]
    # Warm-up images first (a: two, b: one: the last of a's), then every image; turns reversed every other.
    assert calls == [
        ("a", "r0"),
        ("b", "r1"), ("a", "r1"),
        ("a", "r0"), ("b", "r0"),
        ("b", "r1"), ("a", "r1"),
        ("a", "r2"), ("b", "r2"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        ({"detectors": {}, "generators": {}, "speed": 1}, [], "unknown matrix key 'speed'"),
        (
            {"detectors": {"a": {"config": "x.yaml", "colour": 1}}, "generators": {"r2cnn": {}}},
            [],
            "detectors.a.colour",
        ),
        (
            {"detectors": {"a": {"from": "b"}}, "generators": {"r2cnn": {}}},
            [],
            "is not a detector listed before",
        ),
        (
            {"detectors": {"a": {"config": "x.yaml"}}, "generators": {"r2cnn": {}}},
            ["--detectors", "b"],
            "unknown detector",
        ),
        (
            {"detectors": {"a": {"config": "x.yaml"}}, "generators": {"r2cnn": {}}, "images": -1},
            [],
            "'images'",
        ),
        (
            {
                "detectors": {"a": {"config": "x.yaml", "generators": ["edge_boxes"]}},
                "generators": {"r2cnn": {}},
            },
            [],
            "detectors.a.generators: 'edge_boxes' is not one of the matrix's generators (r2cnn)",
        ),
        (
            {
                "detectors": {"a": {"config": "x.yaml", "compress": {"max_map_drop": 1}}},
                "generators": {"r2cnn": {}},
            },
            [],
            "detectors.a.compress: with 'from'",
        ),
        (
            {"detectors": {"a": {"config": "x.yaml", "export": {"search": 1}}}, "generators": {"r2cnn": {}}},
            [],
            "detectors.a.export: with 'from'",
        ),
        (
            {"detectors": {"a": {"config": "x.yaml", "runtime": "tvm"}}, "generators": {"r2cnn": {}}},
            [],
            "detectors.a.runtime: one of torch, onnxruntime, got 'tvm'",
        ),
        (
            {"detectors": {"a": {"config": "x.yaml"}}, "generators": {"r2cnn": {}}, "peer": {"like": "b"}},
            [],
            "peer: expected {like: <a detector of the matrix>}",
        ),
    ],
)
def test_bad_matrix_files_are_named_errors(tmp_path, capsys, content, extra, message):
    path = tmp_path / "matrix.yaml"
    path.write_text(yaml.safe_dump(content))
    assert main(["bench", "--matrix", str(path), "--out", str(tmp_path / "o"), *extra]) == 2
    assert message in capsys.readouterr().err


def test_missing_inputs_are_clear_errors(tmp_path, capsys):
    assert main(["bench", "--matrix", str(tmp_path / "none.yaml"), "--out", str(tmp_path)]) == 2
    assert "matrix file not found" in capsys.readouterr().err
    assert main(["bench", "--data-root", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert main(["profile", "--checkpoint", str(tmp_path / "none.pth")]) == 2
    assert "no such file" in capsys.readouterr().err


def _result(detector, generator, seconds, proposals_s, boxes=300, head_s=0.004, mAP=0.5, **extra):
    return {
        "detector": detector,
        "family": extra.pop("family", detector),
        "generator": generator,
        "seconds_per_image": seconds,
        "proposals_per_image": boxes,
        "voc07_mAP": mAP,
        "stages": {"proposals": {"mean": proposals_s}, "head": {"mean": head_s}},
        **extra,
    }


RESULTS = [
    _result("fast_rcnn", "selective_search", 0.310, 0.290, boxes=274, mAP=0.8),
    _result("sppnet", "selective_search", 0.320, 0.290, boxes=274),
    _result("rcnn", "selective_search", 0.790, 0.290, boxes=274),
    _result("fast_rcnn", "sliding_window", 0.022, 0.002),
    _result("rcnn", "sliding_window", 0.502, 0.002),
    _result("fast_rcnn", "r2cnn", 0.025, 0.002, mAP=0.78),
    _result("fast_rcnn_svd", "r2cnn", 0.020, 0.002, head_s=0.002, mAP=0.77, family="fast_rcnn",
            base="fast_rcnn", variant="SVD fc6=8", compressed=True),
    _result("fast_rcnn_ort", "r2cnn", 0.015, 0.002, mAP=0.78, family="fast_rcnn", base="fast_rcnn",
            variant="backbone in onnxruntime", compressed=False),
]  # fmt: skip


def test_report_ratios_are_computed_on_the_same_boxes():
    by_title = {item.title: item for item in comparisons(RESULTS, "fast_rcnn")}
    versus_ss = by_title["R²-CNN against selective search in the same model"].lines
    assert versus_ss[0] == (
        "fast_rcnn: VOC07 mAP 0.780 with R²-CNN vs 0.800 with selective search: 0.97x (target ≥ 0.95x: met)."
    )
    assert "(145.0x less time)" in versus_ss[1]  # proposals: selective search over R²-CNN
    assert "25.0 vs 310.0 ms with selective search, 12.4x less (target ≥ 15x: not met, 12.4x)" in versus_ss[2]
    assert "fast_rcnn_ort (backbone in onnxruntime) + R²-CNN: 15.0 vs 310.0 ms" in versus_ss[4]
    assert "20.7x less (target ≥ 15x: met)" in versus_ss[4]

    families = by_title["Fast R-CNN against SPPnet and R-CNN on the same boxes"].lines
    assert families[0] == (
        "Detection time per image (proposals excluded, 274 selective-search boxes): "
        "Fast R-CNN 20.0 ms < SPPnet 30.0 ms < R-CNN 500.0 ms."
    )
    assert "Fast R-CNN is 25.0x faster than R-CNN and 1.5x faster than SPPnet" in families[1]

    (compressed,) = by_title["Compressed heads against the full one"].lines  # only the head that changed
    assert "4.0 -> 2.0 ms per image (2.0x faster); VOC07 mAP 0.780 -> 0.770 (-1.0 points)" in compressed
    assert "detaccel against torchvision's Faster R-CNN" not in by_title  # no peer in this run

    table = detection_speed_table(RESULTS).splitlines()
    assert table[2] == "| selective_search | 274 | 20.0 | 30.0 | 500.0 | 25.0x |"
    assert table[3] == "| sliding_window | 300 | 20.0 |  | 500.0 | 25.0x |"
    assert len(table) == 4  # r2cnn has no R-CNN result: no row
    assert detection_speed_table(RESULTS[5:]) == ""


def test_report_states_the_peer_target_either_way():
    peer = {"detector": "torchvision Faster R-CNN", "voc07_mAP": 0.7, "seconds_per_image": 0.040,
            "seconds": 150.0, "iterations": 900}  # fmt: skip
    (item,) = [c for c in comparisons(RESULTS, "fast_rcnn", peer) if c.plot == "vs_peer.png"]
    assert "trained 150 s (900 iterations" in item.lines[0]
    assert "(1.11x the peer's) at 25.0 ms (0.62x its time" in item.lines[1]
    assert item.lines[1].endswith("not met, 1.11x at 0.62x).")
    assert item.lines[3].endswith("≤ 0.5x time: met).")  # the ONNX Runtime variant: 0.38x its time
    assert [label for label, _, _ in item.bars] == [
        "torchvision Faster R-CNN", "fast_rcnn + r2cnn", "fast_rcnn_svd + r2cnn", "fast_rcnn_ort + r2cnn"
    ]  # fmt: skip


def test_report_without_sppnet_compares_the_families_it_has():
    results = [
        _result("fast_rcnn", "selective_search", 0.310, 0.290, boxes=274),
        _result("rcnn", "selective_search", 3.290, 0.290, boxes=274),
    ]
    (item,) = comparisons(results)
    assert item.lines[1].startswith("Fast R-CNN is 150.0x faster than R-CNN per image on the same boxes")
    table = detection_speed_table(results).splitlines()
    assert table[0] == "| proposals | boxes/img | Fast R-CNN ms | R-CNN ms | R-CNN / Fast R-CNN |"
    assert table[2] == "| selective_search | 274 | 20.0 | 3000.0 | 150.0x |"


def test_benchmark_docs_are_what_the_results_files_give():
    """docs/benchmarks.md and the README's headline figures are the script's output of docs/results/."""
    import subprocess
    import sys
    from pathlib import Path

    tool = Path(__file__).resolve().parents[1] / "tools" / "benchmark_tables.py"
    done = subprocess.run([sys.executable, str(tool), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
