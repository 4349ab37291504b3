import json

import pytest
import torch
import yaml

from detaccel.cli import main
from detaccel.config import ConfigError
from detaccel.engine import (
    FINAL_MODEL,
    LAST_CHECKPOINT,
    CheckpointError,
    DistInfo,
    Trainer,
    load_checkpoint,
    save_checkpoint,
)
from tests.detector_configs import tiny_config, tiny_config_dict, tiny_dataset


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("synthetic"))


def _weights(path):
    return load_checkpoint(path)["model"]


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_train_checkpoint_resume_is_exact(dataset_root, tmp_path):
    config = tiny_config(dataset_root)
    straight = tmp_path / "straight"
    Trainer(config, straight, DistInfo(), progress=False).train()
    assert (straight / FINAL_MODEL).is_file() and (straight / LAST_CHECKPOINT).is_file()
    assert (straight / "loss_curve.png").is_file()
    lines = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    assert [e["iteration"] for e in lines] == [1, 2, 3, 4]
    assert {"loss", "loss_cls", "loss_box", "lr", "accuracy"} <= lines[0].keys()
    assert not list(straight.glob(".*.tmp"))

    interrupted = tmp_path / "interrupted"
    half = tiny_config(dataset_root, train={"max_iter": 2})
    Trainer(half, interrupted, DistInfo(), progress=False).train()
    assert load_checkpoint(interrupted / LAST_CHECKPOINT)["iteration"] == 2
    Trainer(config, interrupted, DistInfo(), resume=True, progress=False).train()
    _assert_same(_weights(straight / FINAL_MODEL), _weights(interrupted / FINAL_MODEL))
    resumed = load_checkpoint(interrupted / LAST_CHECKPOINT)
    assert resumed["iteration"] == 4
    first = load_checkpoint(straight / LAST_CHECKPOINT)
    for a, b in zip(
        first["optimizer"]["state"].values(), resumed["optimizer"]["state"].values(), strict=True
    ):
        torch.testing.assert_close(a["momentum_buffer"], b["momentum_buffer"], rtol=0, atol=0)
    lines = [json.loads(line) for line in (interrupted / "metrics.jsonl").read_text().splitlines()]
    assert [e["iteration"] for e in lines] == [1, 2, 3, 4]


def test_cli_train_eval_compress_eval(dataset_root, tmp_path, capsys):
    config_path = tmp_path / "tiny.yaml"
    config_path.write_text(yaml.safe_dump(tiny_config_dict(dataset_root)))
    out = tmp_path / "run"
    assert main(["train", "--config", str(config_path), "--out", str(out), "--no-progress"]) == 0
    checkpoint = out / FINAL_MODEL
    assert (
        main(
            [
                "eval",
                "--config",
                str(config_path),
                "--checkpoint",
                str(checkpoint),
                "--out",
                str(out / "eval"),
                "--no-progress",
            ]
        )
        == 0
    )
    report = json.loads((out / "eval" / "eval.json").read_text())
    assert 0.0 <= report["metrics"]["voc07"]["mAP"] <= 1.0
    assert (out / "eval" / "detections_coco.json").is_file()
    assert len(list((out / "eval" / "detections_voc").glob("comp4_det_test_*.txt"))) == 6

    compressed = tmp_path / "compressed.pth"
    assert main(["compress", str(checkpoint), "--svd", "fc6=8,fc7=4", "-o", str(compressed)]) == 0
    printed = capsys.readouterr().out
    assert "fc6" in printed and "fc7" in printed and "fewer multiply-adds" in printed
    saved = load_checkpoint(compressed)
    assert saved["config"]["head"]["svd_ranks"] == {"fc6": 8, "fc7": 4}
    # The dataset's own category ids travel with the model, through compression too.
    categories = load_checkpoint(checkpoint)["categories"]
    assert sorted(categories.values()) == sorted(saved["class_names"]) and saved["categories"] == categories
    assert "roi_heads.head.fc6.reduce.weight" in saved["model"]
    assert (
        main(
            [
                "eval",
                "--config",
                str(config_path),
                "--checkpoint",
                str(compressed),
                "--out",
                str(out / "eval_svd"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert (out / "eval_svd" / "eval.json").is_file()
    energy = tmp_path / "energy.pth"
    assert main(["compress", str(checkpoint), "--svd-energy", "0.9", "-o", str(energy)]) == 0
    assert main(["compress", str(compressed), "--svd", "fc6=4", "-o", str(tmp_path / "x.pth")]) == 2
    assert "already factorised" in capsys.readouterr().err


def test_bad_checkpoints(dataset_root, tmp_path, capsys):
    not_torch = tmp_path / "text.pth"
    not_torch.write_text("hello")
    with pytest.raises(CheckpointError, match="not a detaccel checkpoint"):
        load_checkpoint(not_torch)
    plain = tmp_path / "plain.pth"
    torch.save({"weight": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointError, match="no 'detaccel-checkpoint' format marker"):
        load_checkpoint(plain)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pth")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pth"
    torch.save({"format": "detaccel-checkpoint", "x": Evil()}, evil)
    with pytest.raises(CheckpointError, match="weights-only"):
        load_checkpoint(evil)

    # A checkpoint of another architecture: an SPPnet checkpoint given with a Fast R-CNN config.
    config_path = tmp_path / "tiny.yaml"
    config_path.write_text(yaml.safe_dump(tiny_config_dict(dataset_root)))
    spp = tiny_config(dataset_root, "sppnet", train={"max_iter": 1})
    Trainer(spp, tmp_path / "spp", DistInfo(), progress=False).train()
    code = main(["eval", "--config", str(config_path), "--checkpoint", str(tmp_path / "spp" / FINAL_MODEL)])
    assert code == 2
    assert "another architecture (differs in model.family" in capsys.readouterr().err
    # Same config, but weights of a different shape inside.
    broken = load_checkpoint(tmp_path / "spp" / FINAL_MODEL)
    broken["model"]["head.fc6.weight"] = torch.zeros(3, 3)
    save_checkpoint(
        tmp_path / "broken.pth", {k: v for k, v in broken.items() if k not in ("format", "version")}
    )
    assert main(["eval", "--checkpoint", str(tmp_path / "broken.pth")]) == 2
    assert (
        "does not fit this model's architecture (shape mismatch: roi_heads.head.fc6.weight"
        in capsys.readouterr().err
    )
    assert main(["eval", "--checkpoint", str(not_torch)]) == 2
    assert "not a detaccel checkpoint" in capsys.readouterr().err


def test_class_missing_from_config_is_a_clear_error(dataset_root, tmp_path, capsys):
    config_path = tmp_path / "tiny.yaml"
    config_path.write_text(
        yaml.safe_dump(tiny_config_dict(dataset_root, data={"classes": ["disc", "square"]}))
    )
    assert main(["train", "--config", str(config_path), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "unknown class" in err and "data.classes" in err


def test_config_errors_from_cli(dataset_root, tmp_path, capsys):
    config_path = tmp_path / "tiny.yaml"
    config_path.write_text(yaml.safe_dump(tiny_config_dict(dataset_root, train={"iters": 3})))
    assert main(["train", "--config", str(config_path)]) == 2
    assert "unknown config key 'train.iters'" in capsys.readouterr().err


@pytest.mark.parametrize("family", ["rcnn", "sppnet"])
def test_other_families_train_and_evaluate(dataset_root, tmp_path, family):
    sections = {"train": {"max_iter": 2, "eval_after_training": True}}
    if family == "rcnn":
        sections["model"] = {"classifier": "svm"}
    result = Trainer(
        tiny_config(dataset_root, family, **sections), tmp_path, DistInfo(), progress=False
    ).train()
    assert 0.0 <= result["eval"]["metrics"]["voc07"]["mAP"] <= 1.0
    if family == "rcnn":
        assert float(result["model"].predictor.svm.weight.abs().sum()) > 0


def test_training_stops_at_its_time_budget(dataset_root, tmp_path):
    config = tiny_config(dataset_root, train={"max_iter": 100000, "max_seconds": 1.0})
    result = Trainer(config, tmp_path / "budget", DistInfo(), progress=False).train()
    assert 0 < result["iterations"] < 100000
    final = load_checkpoint(tmp_path / "budget" / FINAL_MODEL)
    assert final["iteration"] == result["iterations"]
    with pytest.raises(ConfigError, match=r"train\.max_seconds"):
        tiny_config(dataset_root, train={"max_seconds": 0})


def test_a_resumed_run_counts_its_seconds_on_from_the_checkpoint(dataset_root, tmp_path):
    out = tmp_path / "interrupted"
    config = tiny_config(dataset_root, train={"max_iter": 100000, "max_seconds": 1.0, "checkpoint_period": 1})
    first = Trainer(config, out, DistInfo(), progress=False).train()
    saved = load_checkpoint(out / LAST_CHECKPOINT)
    assert 1.0 <= saved["train_seconds"] <= first["train_seconds"] + 1e-6
    # Resumed with its 1 s already spent, it trains no further (a fresh clock would train another second):
    # the final model is the checkpoint's.
    resumed = Trainer(config, out, DistInfo(), resume=True, progress=False).train()
    assert resumed["iterations"] == 0 and resumed["total_iterations"] == saved["iteration"]
    assert resumed["train_seconds"] >= saved["train_seconds"]
    final = load_checkpoint(out / FINAL_MODEL)
    assert final["iteration"] == saved["iteration"]
    assert all(torch.equal(final["model"][k], v) for k, v in saved["model"].items() if torch.is_tensor(v))
