"""tools/bench_vs_torchvision.py: both detectors trained, then scored in alternating rounds."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.detector_configs import tiny_config_dict, tiny_dataset

TOOL = Path(__file__).resolve().parents[1] / "tools" / "bench_vs_torchvision.py"


def _tool():
    spec = importlib.util.spec_from_file_location("bench_vs_torchvision", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_keep_fastest_keeps_each_entrys_fastest_round():
    tool = _tool()
    kept = {"iterations": 7}
    tool.keep_fastest(
        kept, {"voc07_mAP": 0.5, "seconds_per_image": 2.0, "by_test_scale": {320: {"seconds_per_image": 1.0}}}
    )
    tool.keep_fastest(
        kept, {"voc07_mAP": 0.5, "seconds_per_image": 1.5, "by_test_scale": {320: {"seconds_per_image": 1.2}}}
    )
    assert kept["iterations"] == 7 and kept["seconds_per_image"] == 1.5
    assert kept["by_test_scale"][320]["seconds_per_image"] == 1.0
    ours = {}
    tool.keep_fastest(ours, {"r2cnn": {"seconds_per_image": 3.0, "stages_ms": {"head": 2.0}}})
    tool.keep_fastest(ours, {"r2cnn": {"seconds_per_image": 1.0, "stages_ms": {"head": 0.5}}})
    assert ours == {"r2cnn": {"seconds_per_image": 1.0, "stages_ms": {"head": 0.5}}}


def test_quality_comes_from_the_first_round_and_only_times_from_the_fastest():
    tool = _tool()
    kept = {}
    tool.keep_fastest(
        kept, {"r2cnn": {"voc07_mAP": 0.5, "seconds_per_image": 2.0, "stages_ms": {"head": 2.0}}}
    )
    tool.keep_fastest(
        kept, {"r2cnn": {"voc07_mAP": 0.1, "seconds_per_image": 1.0, "stages_ms": {"head": 1.0}}}
    )
    assert kept == {"r2cnn": {"voc07_mAP": 0.5, "seconds_per_image": 1.0, "stages_ms": {"head": 1.0}}}


def test_a_round_with_other_detections_stops_the_run_naming_it():
    from detaccel.evaluation import Detections

    tool = _tool()
    rounds = tool.SameDetections()
    one = Detections(torch.tensor([[1.0, 2, 30, 40]]), torch.tensor([0.9]), torch.tensor([0]))
    rounds.check(("detaccel", "r2cnn", 240), {"a": one, "b": one})
    rounds.check(("detaccel", "r2cnn", 240), {"a": one, "b": one})  # the same: fine
    other = Detections(torch.tensor([[1.0, 2, 30, 40]]), torch.tensor([0.5]), torch.tensor([0]))
    with pytest.raises(tool.RoundMismatch, match="detaccel with r2cnn at test scale 240: image 'b'"):
        rounds.check(("detaccel", "r2cnn", 240), {"a": one, "b": other})
    fewer = Detections(torch.zeros((0, 4)), torch.zeros(0), torch.zeros(0, dtype=torch.long))
    with pytest.raises(tool.RoundMismatch, match="image 'a'"):
        rounds.check(("detaccel", "r2cnn", 240), {"a": fewer, "b": one})


def test_both_sides_train_and_are_scored_in_the_same_run(tmp_path, monkeypatch):
    data = tiny_dataset(tmp_path / "data")
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(data)))
    out = tmp_path / "out"
    argv = ["bench_vs_torchvision.py", "--config", str(config), "--seconds", "2", "--threads", "1",
            "--warmup", "0", "--test-scales", "64", "--deploy", "4", "--deploy-search", "1",
            "--deploy-val-split", "val", "--deploy-val-images", "4", "--deploy-set", "proposals.max_test=20",
            "--peer-onnx", "--out", str(out)]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    threads = torch.get_num_threads()
    try:
        assert _tool().main() == 0
    finally:
        torch.set_num_threads(threads)  # the tool sets its own
    results = json.loads((out / "results.json").read_text())
    ours, peer = results["detaccel"], results["torchvision"]
    assert ours["iterations"] >= 1 and peer["iterations"] >= 1
    for entry in (ours["sliding_window"], peer, ours["by_test_scale"]["64"]["sliding_window"]):
        assert 0.0 <= entry["voc07_mAP"] <= 1.0 and entry["seconds_per_image"] > 0
    assert ours["sliding_window"]["time_ratio_vs_torchvision"] == pytest.approx(
        ours["sliding_window"]["seconds_per_image"] / peer["seconds_per_image"]
    )
    deployed = results["detaccel_deployed"]
    assert (out / "deployed" / "manifest.json").is_file() and deployed["int8_calibration_images"] == 4
    assert deployed["search"]["split"] == "val" and len(deployed["search"]["candidates"]) >= 4
    assert deployed["sliding_window"]["time_ratio_vs_torchvision"] > 0
    assert 0 < deployed["sliding_window"]["proposals_per_image"] <= 20
    in_onnx = results["torchvision_onnxruntime"]
    assert in_onnx["max_box_difference"] < 0.05 and in_onnx["voc07_mAP"] == pytest.approx(
        peer["voc07_mAP"], abs=0.01
    )


def test_the_peer_runs_eager_whatever_runtime_detaccel_is_given(tmp_path):
    """The peer is scored as its users run it: its backbone in eager PyTorch even when the configuration
    (which detaccel's side is scored with) says onnxruntime."""
    from detaccel.benchmarks.peer import build_peer
    from detaccel.config import config_from_dict

    config = config_from_dict(tiny_config_dict(tiny_dataset(tmp_path / "data")))
    config.backbone.runtime = "onnxruntime"
    peer = build_peer(config, 3)
    assert peer.backbone.body.runtime == "torch" and not peer.backbone.body.exported
