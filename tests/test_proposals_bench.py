import json

import pytest

from detaccel.benchmarks.proposals import markdown_table
from detaccel.cli import main
from detaccel.data import write_synthetic

FIGURES = (
    "time_median_s",
    "time_p90_s",
    "own_time_median_s",
    "proposals_per_image",
    "recall@0.50",
    "recall@0.70",
    "AR@100",
    "AR@300",
    "AR@1000",
)


@pytest.fixture(scope="module")
def tiny_voc(tmp_path_factory):
    return write_synthetic(
        tmp_path_factory.mktemp("synth"), "voc", seed=3, num_images=12, width=160, height=120
    )


def test_bench_writes_figures_table_and_plot(tiny_voc, tmp_path, capsys):
    out = tmp_path / "bench"
    code = main(
        [
            "proposals",
            "bench",
            "--data-root",
            str(tiny_voc),
            "--classes",
            "synthetic",
            "--split",
            "test",
            "--generators",
            "sliding_window,selective_search,r2cnn",
            "--set",
            "r2cnn.backbone=alexnet",
            "--set",
            "sliding_window.scales=[32, 64]",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results) == ["sliding_window", "selective_search", "r2cnn"]
    for figures in results.values():
        for key in FIGURES:
            assert figures[key] >= 0
        assert 0 <= figures["recall@0.70"] <= figures["recall@0.50"] <= 1
    assert results["r2cnn"]["backbone_time_median_s"] > 0
    assert results["r2cnn"]["own_time_median_s"] < results["r2cnn"]["time_median_s"]
    assert results["sliding_window"]["backbone_time_median_s"] is None
    table = (out / "results.md").read_text()
    assert all(f"| {name} |" in table for name in results)
    # The table says which network and weights R²-CNN read.
    assert "- r2cnn: r2cnn on alexnet (random weights, seeded) cut after layer 2, stride 8" in table
    assert (out / "recall.png").stat().st_size > 1000
    assert "own-time speed-up" in capsys.readouterr().out
    # Without the reference in the run the speed-up cell is empty, not "nanx".
    alone = markdown_table({"r2cnn": results["r2cnn"]})
    (row,) = [line for line in alone.splitlines() if line.startswith("| r2cnn |")]
    assert row.split(" | ")[5] == "" and "nan" not in alone


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--generators", "no_such"], "unknown proposal generator 'no_such'"),
        (["--generators", "sliding_window", "--set", "edge_boxes.max_boxes=3"], "not among --generators"),
        (["--generators", "sliding_window", "--set", "sliding_window.bogus=1"], "bogus"),
        (["--generators", "sliding_window", "--set", "oops"], "expected GENERATOR.PARAM=VALUE"),
    ],
)
def test_bench_rejects_bad_options(tiny_voc, tmp_path, capsys, extra, message):
    args = [
        "proposals",
        "bench",
        "--data-root",
        str(tiny_voc),
        "--classes",
        "synthetic",
        "--out",
        str(tmp_path),
    ]
    assert main(args + extra) == 2
    assert message in capsys.readouterr().err


def test_bench_reports_missing_data_root(tmp_path, capsys):
    assert main(["proposals", "bench", "--data-root", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    assert "no such directory" in capsys.readouterr().err


def test_bench_reads_a_trained_checkpoints_features(tiny_voc, tmp_path):
    from detaccel.engine import DistInfo, Trainer
    from detaccel.engine.trainer import FINAL_MODEL
    from tests.detector_configs import tiny_config, tiny_dataset

    data = tiny_dataset(tmp_path / "data")
    Trainer(tiny_config(data, "fast_rcnn"), tmp_path / "model", DistInfo(), progress=False).train()
    out = tmp_path / "bench"
    args = ["proposals", "bench", "--data-root", str(tiny_voc), "--classes", "synthetic", "--no-progress"]
    checkpoint = str(tmp_path / "model" / FINAL_MODEL)
    code = main([*args, "--generators", "r2cnn", "--checkpoint", checkpoint, "--out", str(out)])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["r2cnn"]["reads"].startswith("r2cnn on the given SmallBackbone at out, stride 8")
    assert results["r2cnn"]["proposals_per_image"] > 0 and results["r2cnn"]["backbone_time_median_s"] > 0
    assert main([*args, "--generators", "sliding_window", "--checkpoint", checkpoint, "--out", str(out)]) == 2


def test_generators_take_turns_on_every_image_after_one_warm_up_each():
    import numpy as np

    from detaccel.benchmarks.proposals import benchmark_generators
    from detaccel.data.records import ImageRecord
    from detaccel.proposals.sliding_window import SlidingWindow

    calls = []

    class Recorded(SlidingWindow):
        def generate(self, image, features=None, *, image_id=None):
            calls.append((self.tag, image_id))
            return super().generate(image, features, image_id=image_id)

    generators = []
    for tag, scale in (("small", 16), ("large", 48)):
        generator = Recorded(scales=[scale])
        generator.tag = tag
        generators.append(generator)
    box = np.array([[10.0, 10.0, 50.0, 40.0]])
    records = [ImageRecord(f"i{k}", f"i{k}.png", 80, 64, box, [0], [False], [False]) for k in range(3)]
    image = np.zeros((64, 80, 3), np.uint8)
    small, large = benchmark_generators(generators, records, lambda record: image, progress=False)
    assert calls == [
        ("small", "i0"), ("large", "i0"),  # the warm-up, untimed
        ("small", "i0"), ("large", "i0"),
        ("large", "i1"), ("small", "i1"),
        ("small", "i2"), ("large", "i2"),
    ]  # fmt: skip
    assert small["images"] == large["images"] == 3
    assert small["proposals_per_image"] > large["proposals_per_image"]  # each kept its own boxes
