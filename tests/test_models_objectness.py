"""R²-CNN's learned objectness head: centreness targets, its training, and the detector that carries it."""

from __future__ import annotations

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
from detaccel.models.objectness import ObjectnessHead, box_side_targets, centreness_targets, objectness_loss
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
    loss = objectness_loss(head(feature_map), [torch.tensor([[8.0, 8.0, 30.0, 30.0]])], FIELD)
    loss.backward()
    assert feature_map.grad is None
    assert head.conv.weight.grad is not None and float(head.conv.weight.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match=r"expected a map \[N, 4, h, w\]"):
        head(torch.zeros(1, 3, 5, 7))
    with pytest.raises(ValueError, match="2 maps but boxes of 1 images"):
        objectness_loss(torch.zeros(2, 1, 5, 7), [torch.zeros((0, 4))], FIELD)


@pytest.mark.parametrize("conv", ["full", "separable"])
def test_a_trained_head_ranks_the_object_first(conv):
    """On a map whose objects show in one channel among noise, the learned map puts a box on the object
    at the top of R²-CNN's ranking (with a full or a depthwise-separable 3x3 layer)."""
    torch.manual_seed(0)
    backbone = torch.nn.Module()
    backbone.out_channels, backbone.stride = 6, 8
    params = {**OBJECTNESS["params"], "objectness_conv": conv, "receptive_field": (8.0, 3.5, 8.0)}
    source = build_proposal_source("r2cnn", params, backbone, 50)
    assert source.objectness.conv_type == conv
    optimizer = torch.optim.Adam(source.objectness.parameters(), lr=0.02)

    def sample(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        feature_map = torch.randn(1, 6, 12, 16, generator=generator)
        x, y = (int(v) for v in torch.randint(1, 10, (2,), generator=generator))
        feature_map[0, 2, y : y + 3, x : x + 4] += 3.0  # the object: 4 x 3 cells in channel 2
        box = torch.tensor([[8.0 * x, 8.0 * y, 8.0 * (x + 4) - 1, 8.0 * (y + 3) - 1]])
        return feature_map, box

    generator = torch.Generator().manual_seed(1)
    for _ in range(150):
        feature_map, box = sample(generator)
        loss, _ = source.objectness_loss(feature_map, [box])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    feature_map, box = sample(generator)
    with torch.no_grad():
        (boxes,) = source.propose_from_features(feature_map, [(96, 128)], [1.0])
    assert float(pairwise_iou(boxes[:1], box.numpy()).max()) >= 0.5
    # The raw channels (no head) do not find it first: the head is what ranks it.
    plain = build_proposal_source(
        "r2cnn", {"ranking": "contrast", "num_levels": 6, "receptive_field": (8.0, 3.5, 8.0)}, backbone, 50
    )
    (unranked,) = plain.propose_from_features(feature_map, [(96, 128)], [1.0])
    assert float(pairwise_iou(unranked[:1], box.numpy()).max()) < 0.5


def test_objectness_options_are_checked():
    backbone = torch.nn.Module()
    backbone.out_channels, backbone.stride = 6, 8
    with pytest.raises(ValueError, match="objectness_channels need reduction: objectness"):
        build_proposal_source("r2cnn", {"objectness_channels": 8, "receptive_field": (8, 3.5, 8)}, backbone)
    with pytest.raises(ValueError, match="a head learned with a detector"):
        R2CNN(backbone=None, reduction="objectness", receptive_field=(8, 3.5, 8))
    with pytest.raises(ValueError, match="objectness_boxes: expected true or false"):
        build_proposal_source(
            "r2cnn",
            {**OBJECTNESS["params"], "objectness_boxes": "yes", "receptive_field": (8, 3.5, 8)},
            backbone,
        )
    with pytest.raises(ValueError, match="objectness_conv: expected one of full, separable, got 'dw'"):
        params = {**OBJECTNESS["params"], "objectness_conv": "dw", "receptive_field": (8, 3.5, 8)}
        build_proposal_source("r2cnn", params, backbone)


def test_a_separable_head_is_depthwise_then_pointwise_with_fewer_weights():
    full = ObjectnessHead(32, hidden=64, boxes=True)
    separable = ObjectnessHead(32, hidden=64, boxes=True, conv="separable")
    for branch in (separable.conv, separable.side_conv):
        depthwise, pointwise = branch
        assert depthwise.groups == 32 and depthwise.kernel_size == (3, 3) and depthwise.out_channels == 32
        assert pointwise.kernel_size == (1, 1) and pointwise.out_channels == 64

    def weights(head: ObjectnessHead) -> int:
        return sum(p.numel() for p in head.parameters())

    assert weights(separable) < weights(full) / 4
    assert separable(torch.randn(2, 32, 5, 7)).shape == (2, 5, 5, 7)
    # Each cell of a branch reads the 3x3 window around it, as the full convolution does.
    probe = torch.zeros(1, 32, 9, 9, requires_grad=True)
    separable.side_conv(probe)[0, :, 4, 4].sum().backward()
    window = probe.grad.abs().sum(dim=(0, 1)) > 0
    assert window[3:6, 3:6].all() and int(window.sum()) == 9
    with pytest.raises(ValueError, match="conv must be one of full, separable"):
        ObjectnessHead(4, conv="grouped")


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


@pytest.mark.parametrize(
    ("boxes", "conv"),
    [(False, "full"), (True, "full"), (True, "separable")],
    ids=["objectness", "with_box_sides", "separable_with_box_sides"],
)
def test_a_detector_trains_its_objectness_head_and_loads_it_back(tmp_path, boxes, conv):
    data = tiny_dataset(tmp_path / "data")
    params = {**OBJECTNESS["params"], "objectness_boxes": boxes, "objectness_conv": conv}
    proposals = {**OBJECTNESS, "params": params}
    config = tiny_config(data, "fast_rcnn", proposals=proposals, train={"max_iter": 3})
    result = Trainer(config, tmp_path / "out", DistInfo(), progress=False).train()
    model = result["model"]
    assert "learned objectness" in model.proposal_generator.describe()
    assert (model.proposal_generator.objectness.sides is not None) == boxes
    assert model.proposal_generator.objectness.conv_type == conv
    assert ("box sides" in model.proposal_generator.describe()) == boxes
    entries = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert all(entry["objectness"] > 0 for entry in entries)
    assert all(entry["loss"] > entry["objectness"] for entry in entries)
    _, loaded, _ = load_detector(str(tmp_path / "out" / FINAL_MODEL))
    for name, value in model.proposal_generator.objectness.state_dict().items():
        torch.testing.assert_close(loaded.proposal_generator.objectness.state_dict()[name], value)
    image = read_image(next(data.rglob("*.jpg")))
    (prediction,) = loaded.predict(image)
    assert 0 < len(prediction.proposals) <= 100
    assert prediction.proposals.min() >= 0
    assert prediction.proposals[:, 2].max() <= image.shape[1] - 1
    assert prediction.proposals[:, 3].max() <= image.shape[0] - 1
    np.testing.assert_array_equal(prediction.proposals, model.eval().predict(image)[0].proposals)
    # Swapping the generator's parameters keeps the trained head (of the same shape).
    trained_head = loaded.proposal_generator.objectness
    loaded.set_proposal_generator("r2cnn", {**proposals["params"], "num_levels": 8})
    assert loaded.proposal_generator.objectness is trained_head
    loaded.set_proposal_generator("r2cnn", {**proposals["params"], "objectness_channels": 4})
    assert loaded.proposal_generator.objectness is not trained_head
    # The checkpoint evaluated with another generator: built as trained, then given that generator.
    overrides = ["proposals.name=sliding_window", "proposals.params={scales: [16, 32], aspect_ratios: [1.0]}"]
    config, other, _ = load_detector(str(tmp_path / "out" / FINAL_MODEL), overrides=overrides)
    assert config.proposals.name == "sliding_window" and other.proposal_generator.cacheable
    assert 0 < len(other.predict(image)[0].proposals) <= 100


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_and_cpu_give_the_same_learned_proposals():
    torch.manual_seed(0)
    backbone = torch.nn.Module()
    backbone.out_channels, backbone.stride = 6, 8
    source = build_proposal_source(
        "r2cnn", {**OBJECTNESS["params"], "receptive_field": (8.0, 3.5, 8.0)}, backbone, 50
    )
    feature_map = torch.randn(2, 6, 12, 16)
    with torch.no_grad():
        cpu = source.propose_from_features(feature_map, [(96, 128)] * 2, [1.0, 1.0])
        cuda = source.to("cuda").propose_from_features(feature_map.cuda(), [(96, 128)] * 2, [1.0, 1.0])
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
    exact = objectness_loss(logits, box, FIELD)
    assert float(exact) == pytest.approx(float(objectness_loss(logits[:, :1], box, FIELD)))  # sides: 0 loss
    assert float(
        objectness_loss(logits + torch.tensor([0, 1.0, 0, 0, 0]).view(1, 5, 1, 1), box, FIELD)
    ) > float(exact)
    with pytest.raises(ValueError, match="1 or 5 channels"):
        objectness_loss(torch.zeros(1, 3, 5, 7), box, FIELD)
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
