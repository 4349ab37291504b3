import pytest
import torch
from torch import nn

from detaccel.config import config_from_dict
from detaccel.models import (
    BackboneWeightsError,
    build_backbone,
    build_detector,
    factorize_linear,
    load_backbone_weights,
    rank_for_energy,
    sample_rois,
    warp_regions,
)
from detaccel.models.postprocess import decode_pixel_boxes
from detaccel.models.sampling import encode_pixel_boxes
from detaccel.models.svd import compress_head
from tests.detector_configs import detect_on_maps, tiny_config_dict


def _box_image(height, width, box):
    image = torch.zeros(1, 1, height, width)
    x1, y1, x2, y2 = box
    image[:, :, y1 : y2 + 1, x1 : x2 + 1] = 1.0
    return image


def test_warp_without_padding_fills_crop_with_box():
    image = _box_image(40, 60, (10, 5, 29, 24))  # a 20x20 box
    crops = warp_regions(image, torch.tensor([[0.0, 10, 5, 29, 24]]), size=8, context_padding=0)
    assert crops.shape == (1, 1, 8, 8)
    torch.testing.assert_close(crops, torch.ones_like(crops))


def test_warp_context_padding_geometry():
    size, padding = 16, 4
    image = _box_image(60, 80, (20, 20, 39, 39))  # a 20x20 box with room around it
    crop = warp_regions(image, torch.tensor([[0.0, 20, 20, 39, 39]]), size, padding)[0, 0]
    inner = crop[padding : size - padding, padding : size - padding]
    torch.testing.assert_close(inner, torch.ones_like(inner))
    # The context ring shows the image around the box: zeros here.
    assert float(crop[: padding - 1].abs().max()) == 0.0
    assert float(crop[size - padding + 1 :].abs().max()) == 0.0
    assert float(crop[:, : padding - 1].abs().max()) == 0.0


def test_warp_outside_image_reads_zero_and_aspect_is_ignored():
    image = torch.ones(1, 1, 20, 20)
    crop = warp_regions(image, torch.tensor([[0.0, 10, 0, 29, 9]]), size=10, context_padding=0)[0, 0]
    torch.testing.assert_close(crop[:, :5], torch.ones(10, 5))  # left half inside the image
    torch.testing.assert_close(crop[:, 5:], torch.zeros(10, 5))  # right half beyond the border
    crops = warp_regions(
        torch.randn(2, 3, 20, 20), torch.tensor([[1.0, 0, 0, 19, 19], [0.0, 2, 2, 5, 15]]), 6
    )
    assert crops.shape == (2, 3, 6, 6)


def test_factorised_linear_is_rank_k_reconstruction():
    torch.manual_seed(1)
    layer = nn.Linear(40, 24)
    u, s, vh = torch.linalg.svd(layer.weight.detach().double(), full_matrices=False)
    for rank in (1, 5, 24):
        compressed = factorize_linear(layer, rank)
        weight = compressed.expand.weight.double() @ compressed.reduce.weight.double()
        expected = (u[:, :rank] * s[:rank]) @ vh[:rank]
        torch.testing.assert_close(weight, expected, rtol=1e-5, atol=1e-6)
        assert compressed.reduce.bias is None
        torch.testing.assert_close(compressed.expand.bias, layer.bias)
    x = torch.randn(7, 40)
    torch.testing.assert_close(factorize_linear(layer, 24)(x), layer(x), rtol=1e-5, atol=1e-5)


def test_rank_for_energy_and_compress_head_report():
    values = torch.tensor([3.0, 2.0, 1.0, 0.0])
    assert rank_for_energy(values, 9 / 14) == 1
    assert rank_for_energy(values, 0.9) == 2
    assert rank_for_energy(values, 1.0) == 3
    head = nn.Module()
    head.fc6 = nn.Linear(100, 50)
    head.fc7 = nn.Linear(50, 50)
    report = compress_head(head, ranks={"fc6": 10, "fc7": 5})
    assert [r["params_after"] for r in report] == [10 * 100 + 10 * 50 + 50, 5 * 50 + 5 * 50 + 50]
    assert report[0]["macs_before"] == 5000 and report[0]["macs_after"] == 1500
    with pytest.raises(ValueError, match="already factorised"):
        compress_head(head, ranks={"fc6": 4})
    with pytest.raises(ValueError, match="no fully connected layer 'fc9'"):
        compress_head(head, ranks={"fc9": 4})


def test_sampling_includes_ground_truth_and_fractions():
    gt = torch.tensor([[10.0, 10, 29, 29]])
    proposals = torch.tensor([[10.0, 10, 28, 29], [40, 40, 60, 60], [0, 0, 25, 25], [12, 12, 40, 40]])
    sampled = sample_rois(
        proposals,
        gt,
        torch.tensor([2]),
        num_samples=4,
        fg_fraction=0.5,
        fg_iou=0.5,
        bg_iou_low=0.1,
        bg_iou_high=0.5,
        weights=(10.0, 10.0, 5.0, 5.0),
        generator=torch.Generator().manual_seed(0),
    )
    assert len(sampled) == 4
    assert sorted(sampled.labels.tolist()) == [0, 0, 3, 3]
    fg = sampled.labels > 0
    decoded = decode_pixel_boxes(
        torch.cat([torch.zeros(int(fg.sum()), 12), sampled.targets[fg]], dim=1),
        sampled.boxes[fg],
        (10, 10, 5, 5),
    )[:, 3]
    torch.testing.assert_close(decoded, gt.expand(int(fg.sum()), 4), rtol=1e-4, atol=1e-3)
    targets = encode_pixel_boxes(gt, gt, (10, 10, 5, 5))
    torch.testing.assert_close(targets, torch.zeros(1, 4))


@pytest.mark.parametrize("family", ["fast_rcnn", "sppnet", "rcnn"])
def test_forward_shapes_and_empty_proposals(tmp_path, family):
    config = config_from_dict(tiny_config_dict(tmp_path, family))
    model = build_detector(config, num_classes=3).eval()
    images = torch.randn(2, 3, 48, 64)
    rois = torch.tensor([[0.0, 1, 1, 30, 20], [1.0, 10, 5, 60, 40], [1.0, 0, 0, 63, 47]])
    logits, deltas = model.predictor(model.region_features(images, rois))
    assert logits.shape == (3, 4) and deltas.shape == (3, 16)
    model.postprocess_options["score_threshold"] = 0.0
    out = detect_on_maps(
        model,
        [model.shared_features(images)],
        [[1.0, 1.0]],
        [torch.zeros((0, 4)), rois[1:, 1:]],
        [(48, 64), (48, 64)],
    )
    boxes, scores, labels = out[0]
    assert boxes.shape == (0, 4) and scores.shape == (0,) and labels.shape == (0,)
    boxes, scores, labels = out[1]
    assert len(boxes) > 0 and labels.max() < 3
    assert float(boxes[:, 2].max()) <= 63 and float(boxes[:, 3].max()) <= 47


def test_backbone_weights_file(tmp_path):
    config = config_from_dict(tiny_config_dict(tmp_path)).backbone
    backbone = build_backbone(config)
    good = tmp_path / "good.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in backbone.state_dict().items()}}, good)
    other = build_backbone(config)
    load_backbone_weights(other, good)
    for a, b in zip(backbone.state_dict().values(), other.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(3)}, bad)
    with pytest.raises(BackboneWeightsError, match=r"do not fit backbone.*missing body\.0\.weight"):
        load_backbone_weights(other, bad)
    with pytest.raises(BackboneWeightsError, match="not found"):
        load_backbone_weights(other, tmp_path / "none.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(BackboneWeightsError, match="cannot read weights"):
        load_backbone_weights(other, garbage)


def test_roi_align_reads_the_box_without_rounding_it_to_cells():
    from detaccel.config.schema import RoIFeaturesConfig
    from detaccel.models.roi_features import build_roi_features

    # a stride-8 map whose value is the cell's x index: bilinear sampling makes it the continuous map
    # coordinate (half-pixel aligned), so each bin reads the x at its centre
    features = torch.arange(10.0).repeat(1, 1, 6, 1)  # [1, 1, 6, 10]
    align = build_roi_features("roi_align", RoIFeaturesConfig(output_size=4), channels=1, stride=8)
    rois = torch.tensor([[0.0, 16, 8, 31, 23], [0.0, 20, 8, 35, 23]])  # pixels 16..31 and 20..35
    pooled = align.pool(features, rois, None).view(2, 4, 4)
    torch.testing.assert_close(pooled[0, 0], 1.5 + (torch.arange(4.0) + 0.5) / 2)
    torch.testing.assert_close(pooled[1, 0], 2.0 + (torch.arange(4.0) + 0.5) / 2)  # moved by half a cell
    max_pool = build_roi_features("roi_pool", RoIFeaturesConfig(output_size=4), channels=1, stride=8)
    assert align.output_dim == max_pool.output_dim == 16


def test_fast_rcnn_with_roi_align_forwards(tmp_path):
    config = config_from_dict(
        tiny_config_dict(tmp_path, roi_features={"type": "roi_align", "output_size": 3})
    )
    model = build_detector(config, num_classes=3).eval()
    rois = torch.tensor([[0.0, 1, 1, 30, 20], [1.0, 10, 5, 60, 40]])
    logits, deltas = model.predictor(model.region_features(torch.randn(2, 3, 48, 64), rois))
    assert logits.shape == (2, 4) and deltas.shape == (2, 16) and torch.isfinite(logits).all()


@pytest.mark.parametrize("family", ["fast_rcnn", "sppnet", "rcnn"])
def test_training_forward_returns_the_roi_heads_losses(tmp_path, family):
    """``model(images, targets)`` in training: a dict of each stage's losses (an image-based generator's
    proposal stage has none), figures beside them, and gradients from their sum."""
    config = config_from_dict(tiny_config_dict(tmp_path, family))
    model = build_detector(config, num_classes=3).train()
    images = torch.randn(2, 3, 48, 64)
    targets = [
        {"boxes": torch.tensor([[2.0, 3, 30, 25]]), "labels": torch.tensor([1]), "crowd": None,
         "image_size": (48, 64), "proposals": torch.tensor([[1.0, 2, 31, 26], [30, 30, 60, 46]])},
        {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.long), "crowd": None,
         "image_size": (40, 60), "proposals": torch.tensor([[5.0, 5, 20, 20]])},
    ]  # fmt: skip
    if family == "rcnn":  # region-centric: windows into each image's ground truth then proposals
        targets[0]["windows"], targets[1]["windows"] = [0, 1, 2], [0]
    losses = model(images, targets, seed=3)
    assert set(losses) == {"loss_cls", "loss_box", "accuracy", "fg_fraction"}
    assert all(losses[key].requires_grad for key in ("loss_cls", "loss_box"))
    assert 0 < float(losses["fg_fraction"]) < 1
    sum(v for k, v in losses.items() if k.startswith("loss_")).backward()
    assert model.head.fc6.weight.grad is not None and float(model.head.fc6.weight.grad.abs().sum()) > 0
    again = build_detector(config, num_classes=3).train()
    again.load_state_dict(model.state_dict())
    torch.manual_seed(0)
    first = model(images, targets, seed=3)
    torch.manual_seed(0)
    assert float(again(images, targets, seed=3)["loss_cls"].detach()) == float(
        first["loss_cls"].detach()
    )  # seeded sampling
