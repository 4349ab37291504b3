"""Automatic compression: packed layers, cached-feature fitness, the constrained search and its CLI."""

import itertools
import json

import pytest
import torch
import yaml
from torch import nn

from detaccel.cli import main
from detaccel.compression import CachedRegions, HeadSearch, LayerChoice, compressed_copy, head_bytes
from detaccel.compression.search import pareto_front, read_log
from detaccel.engine import FINAL_MODEL, DistInfo, Trainer, load_checkpoint
from detaccel.engine.data import load_split, records_for_model
from detaccel.engine.loading import load_detector
from detaccel.models.packed import PackedLinear, install_packed_layers
from tests.detector_configs import tiny_config, tiny_config_dict, tiny_dataset


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny Fast R-CNN trained long enough to detect something, and its config file."""
    root = tiny_dataset(tmp_path_factory.mktemp("synthetic"))
    out = tmp_path_factory.mktemp("run")
    overrides = {
        "max_iter": 400,
        "steps": [350],
        "base_lr": 0.02,
        "checkpoint_period": 1000,
        "log_period": 1000,
    }
    config = tiny_config(root, train=overrides)
    Trainer(config, out, DistInfo(), progress=False).train()
    config_path = out / "tiny.yaml"
    config_path.write_text(yaml.safe_dump(tiny_config_dict(root, train=overrides)))
    return out / FINAL_MODEL, config_path


def _cache(checkpoint, config_path, split):
    from detaccel.config import load_config

    config, model, names = load_detector(str(checkpoint), load_config(str(config_path), []))
    dataset = load_split(config, split)
    records = records_for_model(config, dataset, model, checkpoint.parent / "proposals", progress=False)
    return config, model, CachedRegions(model, records, names, progress=False), dataset


def test_packed_linear_prunes_by_magnitude_and_quantises():
    torch.manual_seed(0)
    layer = nn.Linear(40, 12)
    packed = PackedLinear.from_linear(layer, sparsity=0.5)
    weight = packed.dense_weight()
    kept = weight != 0
    assert int(kept.sum()) == 240 and packed.nnz == 240
    torch.testing.assert_close(weight[kept], layer.weight.detach()[kept])
    # the removed weights are the smallest in magnitude
    assert layer.weight.detach().abs()[~kept].max() <= layer.weight.detach().abs()[kept].min()
    x = torch.randn(5, 40)
    torch.testing.assert_close(packed(x), nn.functional.linear(x, weight, layer.bias.detach()))
    quantised = PackedLinear.from_linear(layer, int8=True)
    assert quantised.values.dtype == torch.int8
    error = (quantised(x) - layer(x)).abs().max()
    assert 0 < error < 0.05 * layer(x).abs().max()


def test_packed_layers_round_trip_weights_only(tmp_path):
    torch.manual_seed(0)
    holder = nn.Module()
    holder.fc = PackedLinear.from_linear(nn.Linear(30, 9), sparsity=0.7, int8=True)
    path = tmp_path / "packed.pth"
    torch.save(holder.state_dict(), path)
    shell = nn.Module()
    shell.fc = nn.Linear(30, 9)
    install_packed_layers(shell, {"fc": holder.fc.spec()})
    shell.load_state_dict(torch.load(path, weights_only=True))
    x = torch.randn(4, 30)
    torch.testing.assert_close(shell.fc(x), holder.fc(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="no layer 'nope'"):
        install_packed_layers(shell, {"nope": {"nnz": 1, "int8": False}})


def test_cached_fitness_equals_full_evaluation_and_shrinks(trained):
    checkpoint, config_path = trained
    config, model, cache, dataset = _cache(checkpoint, config_path, "test")
    candidate = {"fc6": LayerChoice(rank=8, sparsity=0.3, int8=True), "bbox_pred": LayerChoice(sparsity=0.5)}
    compressed, ranks, packed = compressed_copy(model, candidate)
    assert ranks == {"fc6": 8} and set(packed) == {
        "head.fc6.reduce",
        "head.fc6.expand",
        "predictor.bbox_pred",
    }
    assert head_bytes(compressed) < head_bytes(model) / 2
    assert type(model.head.fc6) is nn.Linear  # the original is left alone
    from detaccel.engine.evaluator import evaluate_model

    for candidate_model in (model, compressed):
        report = evaluate_model(
            candidate_model, dataset, cache.records, config, DistInfo(), checkpoint.parent / "eval_x", False
        )
        assert cache.voc07_map(candidate_model) == pytest.approx(report["metrics"]["voc07"]["mAP"], abs=1e-12)
    assert cache.head_ms_per_image(compressed) > 0


def test_search_finds_a_candidate_within_budget_and_the_front_is_monotonic(trained, tmp_path):
    checkpoint, config_path = trained
    _, model, cache, _ = _cache(checkpoint, config_path, "train")
    assert cache.voc07_map(model) > 0.05  # a model that detects something
    search = HeadSearch(model, cache, "size", max_map_drop=2.0, log=lambda _: None)
    result = search.run(12, tmp_path / "search.jsonl", seed=0)
    assert len(result.candidates) == 12 and len(read_log(tmp_path / "search.jsonl")) == 12
    assert result.best is not None and result.best.map_drop <= 2.0
    assert result.best.bytes < result.reference.bytes
    front = pareto_front(result.candidates, lambda e: e.bytes)
    assert all(a.bytes <= b.bytes and a.map < b.map for a, b in itertools.pairwise(front))
    # resumes: the 12 logged candidates are read back, 3 more are evaluated
    again = HeadSearch(model, cache, "size", max_map_drop=2.0, log=lambda _: None).run(
        15, tmp_path / "search.jsonl", seed=0
    )
    assert len(again.candidates) == 15 and len(read_log(tmp_path / "search.jsonl")) == 15
    assert [c.candidate for c in again.candidates[:12]] == [c.candidate for c in result.candidates]


def test_cli_auto_writes_loadable_checkpoint_plot_and_summary(trained, tmp_path, capsys):
    checkpoint, config_path = trained
    out = tmp_path / "auto"
    args = ["compress", str(checkpoint), "--auto", "--config", str(config_path), "--max-map-drop", "3"]
    args += ["--evaluations", "8", "--val-split", "train", "--no-progress", "-o", str(out)]
    assert main(args) == 0
    for name in ("model_compressed.pth", "search.jsonl", "pareto.png", "summary.md"):
        assert (out / name).is_file(), name
    saved = load_checkpoint(out / "model_compressed.pth")  # weights_only
    assert saved["config"]["head"]["packed"] or saved["config"]["head"]["svd_ranks"]
    assert "(chosen)" in (out / "summary.md").read_text()
    report = out / "eval"
    assert (
        main(
            ["eval", "--checkpoint", str(out / "model_compressed.pth"), "--out", str(report), "--no-progress"]
        )
        == 0
    )
    assert 0 <= json.loads((report / "eval.json").read_text())["metrics"]["voc07"]["mAP"] <= 1
    # an interrupted log (a cut-off last line) resumes
    with (out / "search.jsonl").open("a") as log:
        log.write('{"name": "trial 8", "cand')
    assert main([*args[:-1], str(out)]) == 0
    assert len(read_log(out / "search.jsonl")) == 8


def test_cli_auto_budget_zero_keeps_the_model_and_bad_input(trained, tmp_path, capsys):
    checkpoint, config_path = trained
    out = tmp_path / "zero"
    base = ["compress", str(checkpoint), "--auto", "--config", str(config_path), "--no-progress"]
    assert main([*base, "--max-map-drop", "0", "-o", str(out)]) == 0
    kept, original = load_checkpoint(out / "model_compressed.pth"), load_checkpoint(checkpoint)
    assert kept["config"]["head"]["packed"] == {} and kept["model"].keys() == original["model"].keys()
    for key, value in original["model"].items():
        same = (
            torch.equal(kept["model"][key], value)
            if isinstance(value, torch.Tensor)
            else kept["model"][key] == value
        )
        assert same, key
    assert main([*base, "--val-split", "test", "-o", str(tmp_path / "t")]) == 2
    assert "is the test split" in capsys.readouterr().err
    assert main([*base, "--max-map-drop", "-1", "-o", str(tmp_path / "n")]) == 2
    assert main([*base, "--svd", "fc6=4", "-o", str(tmp_path / "s")]) == 2
    assert "leave out --svd" in capsys.readouterr().err


def test_budget_no_candidate_meets_is_a_clear_error(trained, tmp_path, capsys):
    checkpoint, config_path = trained
    _, model, cache, _ = _cache(checkpoint, config_path, "train")
    # every candidate below is over a budget of a thousandth of a point unless lossless
    search = HeadSearch(model, cache, "size", max_map_drop=1e-3, log=lambda _: None)
    brutal = {name: LayerChoice(sparsity=0.95) for name in ("fc6", "fc7", "cls_score", "bbox_pred")}
    assert not search.evaluate("brutal", brutal).feasible


def test_finetuning_keeps_the_pruned_weights_at_zero_and_packs_the_same_mask(trained):
    from detaccel.compression.candidates import pack_trained
    from detaccel.compression.finetune import TrainingRegions, finetune_head

    checkpoint, config_path = trained
    config, model, cache, _ = _cache(checkpoint, config_path, "train")
    candidate = {"fc6": LayerChoice(rank=8, sparsity=0.5), "fc7": LayerChoice(sparsity=0.6, int8=True)}
    regions = TrainingRegions(model, cache.records, config, progress=False)
    assert len(regions) > 0 and int((regions.labels > 0).sum()) > 0
    tuned, _, packed_before = compressed_copy(model, candidate, pack=False)
    assert packed_before == {} and type(tuned.head.fc7) is nn.Linear
    zeros = tuned.head.fc7.weight == 0
    assert zeros.float().mean() == pytest.approx(0.6, abs=0.01)
    before = tuned.head.fc7.weight.detach().clone()
    losses = finetune_head(tuned, regions, config, iterations=30, lr=0.01)
    assert len(losses) == 30 and all(map(torch.isfinite, map(torch.tensor, losses)))
    weight = tuned.head.fc7.weight.detach()
    assert torch.all(weight[zeros] == 0) and not torch.equal(weight, before)  # trained, mask held
    packed = pack_trained(tuned, candidate)
    assert set(packed) == {"head.fc6.reduce", "head.fc6.expand", "head.fc7"}
    assert packed["head.fc7"]["nnz"] == int((~zeros).sum()) and packed["head.fc7"]["int8"]
    assert 0 <= cache.voc07_map(tuned) <= 1


def test_cli_auto_with_finetuning(trained, tmp_path):
    checkpoint, config_path = trained
    out = tmp_path / "tuned"
    args = ["compress", str(checkpoint), "--auto", "--config", str(config_path), "--max-map-drop", "3"]
    args += ["--evaluations", "4", "--val-split", "train", "--finetune-iters", "10", "--no-progress"]
    assert main([*args, "-o", str(out)]) == 0
    assert "Fine-tuned 10 iterations" in (out / "summary.md").read_text()
    load_checkpoint(out / "model_compressed.pth")
    assert main([*args[:-3], "--finetune-iters=-1", "-o", str(tmp_path / "bad")]) == 2
