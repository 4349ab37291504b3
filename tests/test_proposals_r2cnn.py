from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from detaccel.proposals import build_generator, finalize_proposals
from detaccel.proposals import r2cnn as r2cnn_module
from detaccel.proposals.r2cnn import R2CNN, local_search
from detaccel.proposals.receptive_field import ReceptiveField, cell_boxes_to_pixels

try:
    from detaccel import ops

    HAVE_OPS = hasattr(ops, "r2cnn_feature_levels")
    OPS_REASON = "detaccel.ops has no r2cnn_feature_levels (extension built without the R²-CNN kernels)"
except Exception as error:  # the extension failed to load
    HAVE_OPS = False
    OPS_REASON = f"detaccel.ops failed to load: {error}"

needs_ops = pytest.mark.skipif(not HAVE_OPS, reason=OPS_REASON)

VGG = ReceptiveField(stride=16, offset=7.5, extent=196)
CELL_BOX = [[2, 1, 4, 3]]
EXPECTED = [
    [32.0, 16.0, 79.0, 63.0],
    [36.8, 20.8, 74.2, 58.2],
    [36.8, 4.0, 74.2, 75.0],
    [20.0, 20.8, 91.0, 58.2],
    [20.0, 4.0, 91.0, 75.0],
]


def small_backbone():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),
    )


def fake_ops(boxes_per_image=CELL_BOX, calls=None):
    def feature_levels(features, num_levels=10):
        if calls is not None:
            calls.append(tuple(features.shape))
        n, _, h, w = features.shape
        return torch.zeros(n, h, w), torch.zeros(n, h, w, dtype=torch.int32)

    def level_boxes(levels, num_levels, max_boxes_per_level=100, *, grouping="flood", superlevel=False):
        return [torch.tensor(boxes_per_image, dtype=torch.int64) for _ in range(levels.shape[0])]

    return SimpleNamespace(r2cnn_feature_levels=feature_levels, r2cnn_level_boxes=level_boxes)


def test_local_search_geometry():
    pixels = cell_boxes_to_pixels(CELL_BOX, VGG)
    np.testing.assert_allclose(local_search(pixels), EXPECTED, atol=1e-9)
    np.testing.assert_allclose(local_search(pixels, [(2.0, 0.5)]), [EXPECTED[0], [8.0, 28.0, 103.0, 51.0]])
    assert local_search(np.zeros((0, 4))).shape == (0, 4)
    two = local_search(np.array([[0, 0, 9, 9], [10, 10, 19, 19]]))
    np.testing.assert_array_equal(two[[0, 5]], [[0, 0, 9, 9], [10, 10, 19, 19]])


def test_generator_maps_cells_through_the_receptive_field(monkeypatch):
    monkeypatch.setattr(r2cnn_module, "r2cnn_ops", fake_ops)
    generator = build_generator("r2cnn", backbone=None, receptive_field=(16, 7.5, 196))
    image = np.zeros((128, 160, 3), np.uint8)
    result = generator.generate(image, torch.rand(64, 8, 10))
    np.testing.assert_allclose(result.boxes, EXPECTED, atol=1e-4)
    assert result.scores is None
    assert result.timings["backbone"] == 0.0
    assert result.timings["proposals"] > 0 and "postprocess" in result.timings


def test_local_search_variants_are_clipped(monkeypatch):
    monkeypatch.setattr(r2cnn_module, "r2cnn_ops", lambda: fake_ops([[0, 0, 0, 0]]))
    generator = build_generator("r2cnn", backbone=None, receptive_field=VGG)
    result = generator.generate(np.zeros((40, 40, 3), np.uint8), torch.rand(1, 4, 3, 3))
    np.testing.assert_allclose(
        result.boxes,
        [[0, 0, 15, 15], [1.6, 1.6, 13.4, 13.4], [1.6, 0, 13.4, 19], [0, 1.6, 19, 13.4], [0, 0, 19, 19]],
        atol=1e-4,
    )


def test_backbone_resize_and_batch(monkeypatch):
    calls = []
    monkeypatch.setattr(r2cnn_module, "r2cnn_ops", lambda: fake_ops(calls=calls))
    generator = build_generator("r2cnn", backbone=small_backbone(), short_side=96)
    assert generator.field == (ReceptiveField(4, 1.5, 18),) * 2
    image = np.zeros((48, 64, 3), np.uint8)
    single = generator.generate(image)
    assert calls == [(1, 16, 24, 32)]  # 96 x 128 input, stride 4
    assert single.timings["backbone"] > 0
    # Cells 2..4 x 1..3 at stride 4 are pixels 8..19 x 4..15 of the doubled image: 4..9 x 2..7 here.
    np.testing.assert_allclose(single.boxes[0], [4.0, 2.0, 9.0, 7.0])
    batch = generator.generate_batch([image, image, image])
    assert calls[-1] == (3, 16, 24, 32)
    for result in batch:
        np.testing.assert_array_equal(result.boxes, single.boxes)
        assert set(result.timings) == {"backbone", "proposals", "postprocess"}
    mixed = generator.generate_batch([image, np.zeros((40, 40), np.uint8)])
    assert [r.image_size for r in mixed] == [(48, 64), (40, 40)]


def test_given_features_follow_the_resize_rule(monkeypatch):
    monkeypatch.setattr(r2cnn_module, "r2cnn_ops", fake_ops)
    generator = build_generator("r2cnn", backbone=None, receptive_field=VGG, short_side=240)
    result = generator.generate(np.zeros((120, 160, 3), np.uint8), torch.rand(1, 4, 15, 20))
    np.testing.assert_allclose(result.boxes[0], [16.0, 8.0, 39.0, 31.0])
    batch = generator.generate_batch([np.zeros((120, 160, 3), np.uint8)] * 2, torch.rand(2, 4, 15, 20))
    np.testing.assert_allclose(batch[1].boxes, result.boxes)


def test_feature_and_backbone_errors(monkeypatch):
    monkeypatch.setattr(r2cnn_module, "r2cnn_ops", fake_ops)
    generator = build_generator("r2cnn", backbone=None, receptive_field=VGG)
    image = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="needs the image's features"):
        generator.generate(image)
    with pytest.raises(ValueError, match="features"):
        generator.generate(image, torch.rand(2, 4, 2, 2))
    with pytest.raises(ValueError, match="pass receptive_field"):
        R2CNN(backbone=nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(2)))
    with pytest.raises(ValueError, match="weights"):
        R2CNN(backbone=small_backbone(), weights="DEFAULT")
    cut = R2CNN(backbone=small_backbone(), layer=2)
    assert cut.field == (ReceptiveField(2, 0.5, 4),) * 2
    assert (
        R2CNN(backbone=small_backbone(), receptive_field=[ReceptiveField(4, 1.5, 18)] * 2).field[0].stride
        == 4
    )


def test_missing_operators_give_a_clear_error(monkeypatch):
    if not HAVE_OPS:
        with pytest.raises(RuntimeError, match="R²-CNN"):
            r2cnn_module.r2cnn_ops()
        return
    monkeypatch.delattr(ops, "r2cnn_level_boxes")
    with pytest.raises(RuntimeError, match="r2cnn_level_boxes"):
        r2cnn_module.r2cnn_ops()


@needs_ops
def test_compiled_operators_end_to_end():
    generator = build_generator("r2cnn", backbone=small_backbone(), num_levels=6, max_boxes_per_level=5)
    image = np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    result = generator.generate(image)
    assert len(result) > 0
    assert (result.boxes[:, 2] <= 79).all() and (result.boxes[:, 3] <= 59).all()
    assert (result.boxes >= 0).all()
    features = generator._run_backbone([image])
    _, levels = ops.r2cnn_feature_levels(features, 6)
    cells = ops.r2cnn_level_boxes(levels, 6, 5)[0]
    assert len(cells) <= 6 * 5
    expected = local_search(cell_boxes_to_pixels(cells, generator.field), generator.scale_factors)
    np.testing.assert_allclose(result.boxes, finalize_proposals(expected, None, (60, 80))[0])
    again = generator.generate(image, features)
    np.testing.assert_array_equal(again.boxes, result.boxes)
    assert again.timings["backbone"] == 0.0


@needs_ops
def test_default_is_pretrained_efficientnet_and_alexnet_pool1_is_an_option():
    generator = build_generator("r2cnn")
    assert generator.field[0].stride == 16 and generator.reduction == "abs"
    assert generator.pixel_mean == pytest.approx((127 / 255,) * 3)
    image = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    result = generator.generate(image)
    assert len(result) > 0 and result.timings["backbone"] > 0
    assert (result.boxes[:, 2] <= 159).all() and (result.boxes[:, 3] <= 119).all()
    stride8 = build_generator("r2cnn", layer="stride8")
    assert stride8.field[0].stride == 8
    with pytest.raises(ValueError, match="no stage"):
        build_generator("r2cnn", layer="stride32")
    alexnet = build_generator("r2cnn", backbone="alexnet")
    assert alexnet.field[0].stride == 8 and alexnet.field[0].extent == 19 and alexnet.reduction == "sum"


def test_compiled_operators_with_vgg16_and_tiny_images():
    generator = build_generator("r2cnn", backbone="vgg16", max_proposals=50)
    assert generator.field == (VGG, VGG)
    for shape in [(48, 64, 3), (10, 12), (1, 1, 4)]:
        image = np.zeros(shape, np.uint8)
        result = generator.generate(image)
        assert len(result) <= 50
        assert (result.boxes[:, 2] <= shape[1] - 1).all() and (result.boxes[:, 3] <= shape[0] - 1).all()
        assert result.timings["backbone"] > 0


def test_random_alexnet_is_the_same_network_in_every_build():
    from detaccel.proposals.backbone import torchvision_features

    state = torch.random.get_rng_state()
    first = torchvision_features("alexnet")
    torch.manual_seed(123)  # the caller's random state does not matter ...
    second = torchvision_features("alexnet")
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    torchvision_features("alexnet")
    torch.testing.assert_close(torch.rand(3), expected)  # ... and is left as it was
    torch.random.set_rng_state(state)


def test_upsampled_field_splits_each_cell_into_finer_cells():
    from detaccel.proposals.receptive_field import upsampled_field

    finer = upsampled_field(VGG, 2)  # VGG cell c: pixels 16c .. 16c + 15
    assert (finer.stride, finer.extent) == (8.0, VGG.extent)
    np.testing.assert_allclose(cell_boxes_to_pixels([[0, 0, 1, 1]], finer), [[0, 0, 15, 15]])
    np.testing.assert_allclose(cell_boxes_to_pixels([[3, 2, 3, 2]], finer), [[24, 16, 31, 23]])
    assert upsampled_field(VGG, 1) == VGG


def test_upsample_reads_the_map_at_a_finer_grid(monkeypatch):
    calls = []
    monkeypatch.setattr(r2cnn_module, "r2cnn_ops", lambda: fake_ops(calls=calls))
    generator = build_generator("r2cnn", backbone=None, receptive_field=(16, 7.5, 196), upsample=2)
    result = generator.generate(np.zeros((128, 160, 3), np.uint8), torch.rand(64, 8, 10))
    assert calls == [(1, 64, 16, 20)]
    # cell box (2, 1, 4, 3) on the stride-8 grid: pixels 16 .. 39 by 8 .. 31
    np.testing.assert_allclose(result.boxes[0], [16, 8, 39, 31], atol=1e-4)
    assert "stride 16 read at 2x" in generator.describe()
    with pytest.raises(ValueError, match="upsample"):
        build_generator("r2cnn", backbone=None, receptive_field=VGG, upsample=0)


@needs_ops
def test_upsample_finds_an_object_that_straddles_cells():
    # a 16 px object at pixels 12 .. 27 on a stride-8 map: it covers half of cells 1 and 3 and all of
    # cell 2, so no box of whole cells reaches IoU 0.5; on the 4 px grid its superlevel set is exact
    line = np.zeros(8, np.float32)
    line[1:4] = [0.5, 1.0, 0.5]
    feature_map = torch.from_numpy(np.outer(line, line))[None, None]
    truth = np.array([12, 12, 27, 27], np.float64)

    def best_iou(upsample):
        generator = build_generator(
            "r2cnn",
            backbone=None,
            receptive_field=(8, 3.5, 8),
            scale_factors=(),
            superlevel=True,
            upsample=upsample,
        )
        boxes = generator.generate(np.zeros((64, 64, 3), np.uint8), feature_map).boxes
        lo, hi = np.maximum(boxes[:, :2], truth[:2]), np.minimum(boxes[:, 2:], truth[2:])
        inter = np.prod(np.clip(hi - lo + 1, 0, None), axis=1)
        area = np.prod(boxes[:, 2:] - boxes[:, :2] + 1, axis=1)
        return float(np.max(inter / (area + 16 * 16 - inter)))

    assert best_iou(1) < 0.5
    assert best_iou(2) == pytest.approx(1.0)


def test_local_maxima_strongest_first_above_the_threshold():
    from detaccel.proposals.r2cnn_scoring import local_maxima

    values = torch.zeros(6, 8)
    values[1, 1], values[1, 2] = 1.0, 0.5  # a peak and a shoulder beside it (not a maximum)
    values[4, 6] = 0.3
    values[4, 2] = 0.05  # a maximum below 10% of the largest value
    xs, ys = local_maxima(values, 10, 0.1)
    assert list(zip(xs.tolist(), ys.tolist(), strict=True)) == [(1, 1), (6, 4)]
    xs, ys = local_maxima(values, 1, 0.0)
    assert list(zip(xs.tolist(), ys.tolist(), strict=True)) == [(1, 1)]
    assert len(local_maxima(torch.zeros(3, 3), 5, 0.1)[0]) == 0
    with pytest.raises(ValueError, match="H, W"):
        local_maxima(torch.zeros(1, 3, 3), 5, 0.1)


@needs_ops
def test_peaks_centre_the_shapes_on_a_blob_no_level_separates():
    # two blobs, one weak and small beside a strong one: with 2 levels the weak one shares the
    # strong one's lowest level set, so only a box around both covers it; a peak box fits it
    values = np.zeros((8, 12), np.float32)
    values[2:5, 1:4] = 0.8
    values[3, 2] = 1.0
    values[6, 9] = 0.3
    feature_map = torch.from_numpy(values)[None, None]
    options = dict(
        backbone=None,
        receptive_field=(8, 3.5, 8),
        scale_factors=(),
        superlevel=True,
        num_levels=2,
        shapes=[(8.0, 8.0)],
    )
    image = np.zeros((64, 96, 3), np.uint8)
    plain = build_generator("r2cnn", **options).generate(image, feature_map).boxes
    with_peaks = build_generator("r2cnn", peaks=5, **options).generate(image, feature_map).boxes
    weak = [72, 48, 79, 55]  # cell (9, 6) on the stride-8 grid
    assert not any(np.allclose(box, weak) for box in plain)
    assert any(np.allclose(box, weak) for box in with_peaks)
    assert any(np.allclose(box, [16, 24, 23, 31]) for box in with_peaks)  # the strong blob's centre cell
    with pytest.raises(ValueError, match="peaks"):
        build_generator("r2cnn", backbone=None, receptive_field=VGG, peaks=3)
