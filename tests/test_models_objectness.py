"""R²-CNN's learned objectness head: centreness targets, its training, and the detector that carries it."""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest
import torch
import yaml

from detaccel.cli import main
from detaccel.config import config_to_dict
from detaccel.data import read_image
from detaccel.engine import DistInfo, Trainer
from detaccel.engine.loading import load_detector
from detaccel.engine.trainer import FINAL_MODEL
from detaccel.evaluation.overlaps import pairwise_iou
from detaccel.models.detector_proposals import DetectorProposals
from detaccel.models.objectness import ObjectnessHead, box_side_targets, centreness_targets, objectness_losses
from detaccel.models.proposal_generator import build_proposal_source
from detaccel.proposals.r2cnn import R2CNN
from detaccel.proposals.receptive_field import ReceptiveField
from tests.detector_configs import tiny_config, tiny_dataset

FIELD = (ReceptiveField(8.0, 3.5, 8.0), ReceptiveField(8.0, 3.5, 8.0))  # cell c centred at pixel 3.5 + 8c
OBJECTNESS = {
    "name": "r2cnn",
    "params": {"reduction": "objectness", "objectness_channels": 8, "ranking": "contrast", "num_levels": 6},
    "max_test": 100,
}


def test_centreness_targets_worked_by_hand():
    # Box x 3.5..35.5, y 3.5..19.5: cell centres x 3.5, 11.5, 19.5, 27.5, 35.5 and y 3.5, 11.5, 19.5.
    boxes = torch.tensor([[3.5, 3.5, 35.5, 19.5]])
    targets = centreness_targets([boxes, torch.zeros((0, 4))], (4, 6), FIELD)
    assert targets.shape == (2, 1, 4, 6)
    assert float(targets[0, 0, 1, 2]) == pytest.approx(1.0)  # the centre (19.5, 11.5)
    # (11.5, 11.5): horizontal 8 / 24, vertical 8 / 8.
    assert float(targets[0, 0, 1, 1]) == pytest.approx((8 / 24) ** 0.5)
    assert float(targets[0, 0, 0, 2]) == 0.0  # on the border
    assert float(targets[0, 0, 3, 2]) == 0.0  # outside (y 27.5)
    assert float(targets[0, 0, :, 5].abs().max()) == 0.0  # outside (x 43.5)
    assert float(targets[1].abs().max()) == 0.0  # an image without boxes
    # Overlapping boxes: the larger centreness of the two.
    second = torch.tensor([[3.5, 3.5, 35.5, 19.5], [-4.5, 3.5, 27.5, 19.5]])
    both = centreness_targets([second], (4, 6), FIELD)
    assert float(both[0, 0, 1, 1]) == pytest.approx(max((8 / 24) ** 0.5, (16 / 16) ** 0.5))


def test_the_head_reads_the_map_detached_and_checks_its_shape():
    head = ObjectnessHead(4, hidden=6)
    feature_map = torch.randn(1, 4, 5, 7, requires_grad=True)
    losses = objectness_losses(head(feature_map), [torch.tensor([[8.0, 8.0, 30.0, 30.0]])], FIELD)
    assert set(losses) == {"loss_objectness"}
    losses["loss_objectness"].backward()
    assert feature_map.grad is None
    assert head.conv.weight.grad is not None and float(head.conv.weight.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match=r"expected a map \[N, 4, h, w\]"):
        head(torch.zeros(1, 3, 5, 7))
    with pytest.raises(ValueError, match="2 maps but boxes of 1 images"):
        objectness_losses(torch.zeros(2, 1, 5, 7), [torch.zeros((0, 4))], FIELD)


def _map_backbone() -> torch.nn.Module:
    backbone = torch.nn.Module()
    backbone.out_channels, backbone.stride = 6, 8
    return backbone


def test_a_trained_head_ranks_the_object_first():
    """On a map whose objects show in one channel among noise, the learned map puts a box on the object
    at the top of R²-CNN's ranking."""
    torch.manual_seed(0)
    params = {**OBJECTNESS["params"], "receptive_field": (8.0, 3.5, 8.0)}
    head = ObjectnessHead(6, hidden=8)
    source = build_proposal_source("r2cnn", params, _map_backbone(), 50, objectness=head)
    assert list(source.parameters()) == []  # the slot holds no weights: the head is the detector's
    optimizer = torch.optim.Adam(head.parameters(), lr=0.02)

    def sample(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        feature_map = torch.randn(1, 6, 12, 16, generator=generator)
        x, y = (int(v) for v in torch.randint(1, 10, (2,), generator=generator))
        feature_map[0, 2, y : y + 3, x : x + 4] += 3.0  # the object: 4 x 3 cells in channel 2
        box = torch.tensor([[8.0 * x, 8.0 * y, 8.0 * (x + 4) - 1, 8.0 * (y + 3) - 1]])
        return feature_map, box

    generator = torch.Generator().manual_seed(1)
    for _ in range(150):
        feature_map, box = sample(generator)
        _, losses = source(feature_map, [(96, 128)], [1.0], head, [box])
        assert set(losses) == {"loss_objectness"}
        optimizer.zero_grad()
        losses["loss_objectness"].backward()
        optimizer.step()
    feature_map, box = sample(generator)
    with torch.no_grad():
        (boxes,), losses = source(feature_map, [(96, 128)], [1.0], head)
    assert losses == {}  # no targets: inference
    assert float(pairwise_iou(boxes[:1], box.numpy()).max()) >= 0.5
    # The raw channels (no head) do not find it first: the head is what ranks it.
    plain = build_proposal_source(
        "r2cnn",
        {"ranking": "contrast", "num_levels": 6, "receptive_field": (8.0, 3.5, 8.0)},
        _map_backbone(),
        50,
    )
    (unranked,), _ = plain(feature_map, [(96, 128)], [1.0])
    assert float(pairwise_iou(unranked[:1], box.numpy()).max()) < 0.5


def test_objectness_options_are_checked():
    backbone, field = _map_backbone(), {"receptive_field": (8, 3.5, 8)}
    with pytest.raises(ValueError, match="objectness_channels': needs reduction: objectness"):
        build_proposal_source("r2cnn", {"objectness_channels": 8, **field}, backbone)
    with pytest.raises(ValueError, match="a head learned with a detector"):
        R2CNN(backbone=None, reduction="objectness", receptive_field=(8, 3.5, 8))
    with pytest.raises(ValueError, match="objectness_boxes': expected bool, got str 'yes'"):
        build_proposal_source("r2cnn", {**OBJECTNESS["params"], "objectness_boxes": "yes", **field}, backbone)
    with pytest.raises(ValueError, match="objectness_conv': 'separable' was removed"):
        build_proposal_source(
            "r2cnn", {**OBJECTNESS["params"], "objectness_conv": "separable", **field}, backbone
        )
    # The learned reduction reads the detector's head: none, or one of another shape, is refused.
    with pytest.raises(ValueError, match="this detector has none"):
        build_proposal_source("r2cnn", {**OBJECTNESS["params"], **field}, backbone)
    head = ObjectnessHead(6, hidden=8)
    with pytest.raises(ValueError, match=r"objectness_channels=4\) do not fit .* \(objectness_channels=8\)"):
        build_proposal_source("r2cnn", {**OBJECTNESS["params"], "objectness_channels": 4, **field}, backbone,
                              objectness=head)  # fmt: skip
    with pytest.raises(ValueError, match="objectness_boxes=True"):
        build_proposal_source("r2cnn", {**OBJECTNESS["params"], "objectness_boxes": True, **field}, backbone,
                              objectness=head)  # fmt: skip


def test_inference_runs_both_branches_as_one_with_the_same_logits():
    torch.manual_seed(0)
    head = ObjectnessHead(6, hidden=5, boxes=True)
    for parameter in head.parameters():
        torch.nn.init.normal_(parameter, std=0.3)
    feature_map = torch.randn(2, 6, 7, 9)

    def branches() -> torch.Tensor:  # each branch on its own, as in training
        logits = head.logits(torch.relu(head.conv(feature_map)))
        return torch.cat((logits, head.sides(torch.relu(head.side_conv(feature_map)))), dim=1)

    with torch.no_grad():
        expected = branches()
        torch.testing.assert_close(head(feature_map), expected, atol=1e-5, rtol=1e-5)
        assert head._fused is not None and head._fused[1][0][0].shape == (10, 6, 3, 3)
        out_weight = head._fused[1][1][0]
        assert float(out_weight[0, 5:].abs().max()) == 0.0 and float(out_weight[1:, :5].abs().max()) == 0.0
        head.side_conv.weight.mul_(2.0)  # a changed weight rebuilds the fused layers
        torch.testing.assert_close(head(feature_map), branches(), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(head(feature_map)[:, 1:], expected[:, 1:])
    assert head(feature_map).requires_grad  # with gradients (training) the branches run apart


def test_proposal_bench_reads_the_detectors_own_slot(tmp_path, capsys):
    """``proposals bench --checkpoint`` on a detector trained with a learned head measures the boxes its
    ``predict`` scores."""
    data = tiny_dataset(tmp_path / "data")
    config = tiny_config(data, "fast_rcnn", proposals=OBJECTNESS, train={"max_iter": 2})
    model = Trainer(config, tmp_path / "out", DistInfo(), progress=False).train()["model"].eval()
    out = tmp_path / "bench"
    args = ["proposals", "bench", "--data-root", str(data), "--classes", "synthetic", "--no-progress"]
    checkpoint = str(tmp_path / "out" / FINAL_MODEL)
    assert main([*args, "--generators", "r2cnn", "--checkpoint", checkpoint, "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert "learned objectness" in results["r2cnn"]["reads"]
    image = read_image(next(data.rglob("*.jpg")))
    expected = model.predict(image)[0].proposals
    boxes = DetectorProposals(model).generate(np.ascontiguousarray(image[:, :, ::-1])).boxes
    np.testing.assert_allclose(boxes, expected[: len(boxes)], atol=1e-4)
    assert len(boxes) == len(expected)
    # Without --data-root: the split of the dataset the detector was trained on, not the embedded default.
    alone = tmp_path / "bench_alone"
    code = main(
        ["proposals", "bench", "--generators", "r2cnn", "--checkpoint", checkpoint, "--out", str(alone)]
    )
    assert code == 0
    test_images = len(next(data.rglob("ImageSets/Main/test.txt")).read_text().split())
    assert json.loads((alone / "results.json").read_text())["r2cnn"]["images"] == test_images
    assert f"in {data}" in capsys.readouterr().out
    shutil.move(data, tmp_path / "moved")
    assert (
        main(["proposals", "bench", "--generators", "r2cnn", "--checkpoint", checkpoint, "--out", str(alone)])
        == 2
    )
    assert "the dataset it was trained on" in capsys.readouterr().err
    shutil.move(tmp_path / "moved", data)
    # A bench matrix's r2cnn on this detector is its own R²-CNN (learned head), the matrix's cap on top.
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config_to_dict(config)))
    spec = {
        "images": 2,
        "detectors": {"own": {"config": str(config_path), "checkpoint": checkpoint}},
        "generators": {"r2cnn": {"max_proposals": 5}},
    }
    (tmp_path / "matrix.yaml").write_text(yaml.safe_dump(spec))
    matrix_out = tmp_path / "matrix"
    assert (
        main(["bench", "--matrix", str(tmp_path / "matrix.yaml"), "--out", str(matrix_out), "--no-progress"])
        == 0
    )
    (row,) = json.loads((matrix_out / "results.json").read_text())["results"]
    assert "learned objectness" in row["proposal_source"] and 0 < row["proposals_per_image"] <= 5


@pytest.mark.parametrize("boxes", [False, True], ids=["objectness", "with_box_sides"])
def test_a_detector_trains_its_objectness_head_and_loads_it_back(tmp_path, boxes):
    data = tiny_dataset(tmp_path / "data")
    params = {**OBJECTNESS["params"], "objectness_boxes": boxes}
    proposals = {**OBJECTNESS, "params": params}
    config = tiny_config(data, "fast_rcnn", proposals=proposals, train={"max_iter": 3})
    result = Trainer(config, tmp_path / "out", DistInfo(), progress=False).train()
    model = result["model"]
    assert "learned objectness" in model.proposal_generator.describe()
    assert (model.objectness.sides is not None) == boxes
    entries = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    # Each stage's losses, logged apart and summed.
    expected = {"loss_objectness", "loss_cls", "loss_box", *(["loss_sides"] if boxes else [])}
    for entry in entries:
        assert expected <= set(entry) and entry["loss_objectness"] > 0
        assert entry["loss"] == pytest.approx(sum(entry[key] for key in expected), rel=1e-5)
    _, loaded, _ = load_detector(str(tmp_path / "out" / FINAL_MODEL))
    assert loaded.objectness.stage == model.objectness.stage == "out"
    for name, value in model.objectness.state_dict().items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(loaded.objectness.state_dict()[name], value)
    image = read_image(next(data.rglob("*.jpg")))
    (prediction,) = loaded.predict(image)
    assert 0 < len(prediction.proposals) <= 100
    assert prediction.proposals.min() >= 0
    assert prediction.proposals[:, 2].max() <= image.shape[1] - 1
    assert prediction.proposals[:, 3].max() <= image.shape[0] - 1
    np.testing.assert_array_equal(prediction.proposals, model.eval().predict(image)[0].proposals)
    # Another generator's parameters keep the trained head; settings that do not fit it are refused.
    trained_head = loaded.objectness
    loaded.set_proposal_generator("r2cnn", {**proposals["params"], "num_levels": 8})
    assert loaded.objectness is trained_head
    with pytest.raises(ValueError, match="do not fit the detector's trained objectness head"):
        loaded.set_proposal_generator("r2cnn", {**proposals["params"], "objectness_channels": 4})
    assert loaded.objectness is trained_head
    # The checkpoint evaluated with another generator: built as trained, then given that generator.
    overrides = ["proposals.name=sliding_window", "proposals.params={scales: [16, 32], aspect_ratios: [1.0]}"]
    config, other, _ = load_detector(str(tmp_path / "out" / FINAL_MODEL), overrides=overrides)
    assert config.proposals.name == "sliding_window" and other.proposal_generator.cacheable
    assert 0 < len(other.predict(image)[0].proposals) <= 100
    assert other.objectness is not None  # what the detector learned stays in it


def test_r2cnn_to_selective_search_and_back_keeps_every_trained_tensor(tmp_path):
    data = tiny_dataset(tmp_path / "data")
    params = {**OBJECTNESS["params"], "objectness_boxes": True, "shapes": "auto", "num_shapes": 2}
    config = tiny_config(data, "fast_rcnn", proposals={**OBJECTNESS, "params": params}, train={"max_iter": 3})
    Trainer(config, tmp_path / "out", DistInfo(), progress=False).train()
    _, model, _ = load_detector(str(tmp_path / "out" / FINAL_MODEL))
    image = read_image(next(data.rglob("*.jpg")))
    before = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in model.state_dict().items()}
    (first,) = model.predict(image)
    assert model.box_shapes.sizes is not None and len(model.box_shapes.sizes) <= 2
    model.set_proposal_generator("selective_search", {"mode": "fast", "num_threads": 1})
    assert model.proposal_generator.cacheable
    model.set_proposal_generator("r2cnn", params)  # the user's own settings: shapes: auto reads the model's
    after = model.state_dict()
    assert set(after) == set(before)
    for key, value in before.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(after[key], value), key
        else:
            assert after[key] == value, key
    (again,) = model.predict(image)
    np.testing.assert_array_equal(again.proposals, first.proposals)
    torch.testing.assert_close(again.boxes, first.boxes, rtol=0, atol=0)
    torch.testing.assert_close(again.scores, first.scores, rtol=0, atol=0)


def test_a_config_with_shapes_auto_takes_the_checkpoints_shapes_and_saves_a_loadable_copy(tmp_path):
    from detaccel.engine import save_checkpoint
    from detaccel.engine.trainer import checkpoint_payload

    data = tiny_dataset(tmp_path / "data")
    params = {**OBJECTNESS["params"], "shapes": "auto", "num_shapes": 2}
    config = tiny_config(data, "fast_rcnn", proposals={**OBJECTNESS, "params": params}, train={"max_iter": 2})
    Trainer(config, tmp_path / "out", DistInfo(), progress=False).train()
    assert config.proposals.params["shapes"] == "auto"  # the caller's config is left as it was
    given, model, names = load_detector(str(tmp_path / "out" / FINAL_MODEL), copy.deepcopy(config))
    shapes = given.proposals.params["shapes"]
    assert shapes != "auto" and [tuple(s) for s in shapes] == [tuple(s) for s in model.box_shapes.sizes]
    assert "num_shapes" not in given.proposals.params
    assert given.proposals.params["num_levels"] == params["num_levels"]  # the rest as given
    # A checkpoint written from that configuration (as `compress --auto` writes one) loads.
    copy_path = tmp_path / "copy.pth"
    save_checkpoint(copy_path, checkpoint_payload(given, names, model, 0))
    _, again, _ = load_detector(str(copy_path))
    image = read_image(next(data.rglob("*.jpg")))
    np.testing.assert_array_equal(again.predict(image)[0].proposals, model.predict(image)[0].proposals)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_and_cpu_give_the_same_learned_proposals():
    torch.manual_seed(0)
    head = ObjectnessHead(6, hidden=8)
    source = build_proposal_source(
        "r2cnn",
        {**OBJECTNESS["params"], "receptive_field": (8.0, 3.5, 8.0)},
        _map_backbone(),
        50,
        objectness=head,
    )
    feature_map = torch.randn(2, 6, 12, 16)
    with torch.no_grad():
        cpu, _ = source(feature_map, [(96, 128)] * 2, [1.0, 1.0], head)
        cuda, _ = source.to("cuda")(feature_map.cuda(), [(96, 128)] * 2, [1.0, 1.0], head.to("cuda"))
    for a, b in zip(cpu, cuda, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-3)


def test_box_side_targets_worked_by_hand():
    # Box x 3.5..35.5, y 3.5..19.5 (pixel edges 3..36 and 3..20); the cell at (19.5, 11.5) is inside.
    boxes = torch.tensor([[3.5, 3.5, 35.5, 19.5], [11.5, 3.5, 27.5, 19.5]])
    targets, weights = box_side_targets([boxes], (4, 6), FIELD)
    assert targets.shape == (1, 4, 4, 6) and weights.shape == (1, 1, 4, 6)
    # (19.5, 11.5) lies in both: the smaller box owns it (edges 11..28 and 3..20): 8.5 px each side.
    torch.testing.assert_close(targets[0, :, 1, 2], torch.log(torch.full((4,), 8.5 / 8.0)))
    assert float(weights[0, 0, 1, 2]) == pytest.approx(1.0)
    # (3.5, 11.5) lies only in the large box, on its left border: 0.5 px left, 32.5 right.
    torch.testing.assert_close(targets[0, :, 1, 0], torch.log(torch.tensor([0.5, 8.5, 32.5, 8.5]) / 8.0))
    assert float(weights[0, 0, 1, 0]) == 0.0  # the border: centreness 0
    assert float(weights[0, 0, 3].abs().max()) == 0.0  # outside every box


def test_box_side_loss_and_r2cnn_adds_the_box_they_describe():
    head = ObjectnessHead(4, hidden=6, boxes=True)
    feature_map = torch.randn(1, 4, 5, 7)
    assert head(feature_map).shape == (1, 5, 5, 7)
    box = [torch.tensor([[8.0, 8.0, 30.0, 30.0]])]
    targets, _ = box_side_targets(box, (5, 7), FIELD)
    logits = torch.cat((torch.zeros(1, 1, 5, 7), targets), dim=1)
    exact = objectness_losses(logits, box, FIELD)
    assert float(exact["loss_sides"]) == pytest.approx(0.0, abs=1e-7)  # the sides are the targets
    only = objectness_losses(logits[:, :1], box, FIELD)
    assert set(only) == {"loss_objectness"} and float(only["loss_objectness"]) == float(
        exact["loss_objectness"]
    )
    moved = objectness_losses(logits + torch.tensor([0, 1.0, 0, 0, 0]).view(1, 5, 1, 1), box, FIELD)
    assert float(moved["loss_sides"]) > 1e-3
    with pytest.raises(ValueError, match="1 or 5 channels"):
        objectness_losses(torch.zeros(1, 3, 5, 7), box, FIELD)
    # Sides that describe a 21 x 13 px box (edges 9..30 x 5..18) at every cell: R²-CNN proposes it
    # centred on the blob's centre cell.
    generator = R2CNN(backbone=None, receptive_field=(8.0, 3.5, 8.0), num_levels=4)
    blob = torch.zeros(1, 1, 6, 8)
    blob[0, 0, 1, 2] = 1.0  # cell (2, 1), centred at (19.5, 11.5)
    sides = torch.log(torch.tensor([10.5, 6.5, 11.5, 7.5]) / 8.0).view(1, 4, 1, 1).expand(1, 4, 6, 8)
    ((plain, _),) = generator.boxes_from_features(blob)
    ((learned, _),) = generator.boxes_from_features(blob, sides)
    expected = np.array([[9.5, 5.5, 30.5, 18.5]])
    assert float(pairwise_iou(plain, expected).max()) < 0.9
    assert float(pairwise_iou(learned, expected).max()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="box_sides: expected"):
        generator.boxes_from_features(blob, sides[:, :3])


def test_learned_boxes_rank_first_and_a_second_pass_reads_at_their_centre():
    # At the blob's cell (2, 1) (centre 19.5, 11.5) the sides describe edges 15..40 x 7..16, a box
    # centred on cell (3, 1); there they describe edges 19..36 x 3..20.
    blob = torch.zeros(1, 1, 6, 8)
    blob[0, 0, 1, 2] = 1.0
    sides = torch.zeros(1, 4, 6, 8)
    sides[0, :, 1, 2] = torch.log(torch.tensor([4.5, 4.5, 20.5, 4.5]) / 8.0)
    sides[0, :, 1, 3] = torch.log(torch.tensor([8.5, 8.5, 8.5, 8.5]) / 8.0)
    first, second = np.array([[15.5, 7.5, 39.5, 15.5]]), np.array([[19.5, 3.5, 35.5, 19.5]])
    params = {"backbone": None, "receptive_field": (8.0, 3.5, 8.0), "num_levels": 4, "ranking": "contrast"}
    ((one_pass, scores),) = R2CNN(**params).boxes_from_features(blob, sides)
    ((two_passes, _),) = R2CNN(**params, side_passes=2).boxes_from_features(blob, sides)
    assert float(pairwise_iou(one_pass, first).max()) == pytest.approx(1.0)
    assert float(pairwise_iou(one_pass, second).max()) < 0.9
    assert float(pairwise_iou(two_passes, second).max()) == pytest.approx(1.0)
    # Ranked: the learned boxes (one per level box, two levels here) come before every searched box.
    ((searched, _),) = R2CNN(**params).boxes_from_features(blob)
    learned_rows = [i for i, box in enumerate(one_pass) if not (np.abs(searched - box).sum(1) < 1e-6).any()]
    assert learned_rows == list(range(len(learned_rows))) and len(learned_rows) >= 1
    assert np.all(np.diff(scores) <= 0)
    with pytest.raises(ValueError, match="side_passes"):
        R2CNN(**params, side_passes=0)
