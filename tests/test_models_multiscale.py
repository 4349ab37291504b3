"""Multi-scale testing (SPPnet): scale assignment, agreement with single-scale detection, configs."""

import pytest
import torch

from detaccel.config import ConfigError, config_from_dict
from detaccel.engine import DistInfo, Trainer
from detaccel.models import build_detector
from detaccel.models.detector import assign_test_scales
from tests.detector_configs import detect_on_maps, tiny_config, tiny_config_dict, tiny_dataset


def test_assign_test_scales_picks_the_area_closest_to_roi_size():
    boxes = torch.tensor(
        [
            [0.0, 0, 7, 7],  # 8 px wide (inclusive): x4 -> 32 px
            [0.0, 0, 31, 31],  # 32 px: x1
            [0.0, 0, 127, 31],  # 128 x 32, the area of a 64 px square: x0.5
            [5.0, 5, 5, 9],  # 1 x 5 px: the largest scale
            [20.0, 20, 41, 41],  # 22 px: x1 -> 484 (540 from 1024), x2 -> 1936 (912 from it)
        ]
    )
    assert assign_test_scales(boxes, [0.5, 1.0, 2.0, 4.0], roi_size=32).tolist() == [3, 1, 0, 3, 1]
    # Equal distances go to the first scale.
    assert assign_test_scales(torch.tensor([[0.0, 0, 15, 15]]), [2.0, 2.0], 32).tolist() == [0]


@pytest.fixture(scope="module")
def model_and_image(tmp_path_factory):
    torch.manual_seed(0)
    config = config_from_dict(tiny_config_dict(tmp_path_factory.mktemp("m"), "sppnet"))
    model = build_detector(config, num_classes=3).eval()
    model.postprocess_options["score_threshold"] = 0.0
    return model, torch.randn(1, 3, 96, 128)


def _resized(image, scale):
    size = (round(image.shape[-2] * scale), round(image.shape[-1] * scale))
    return torch.nn.functional.interpolate(image, size=size, mode="bilinear", align_corners=False)


def _detect_single(model, image, scale, proposals):
    """Single-scale detection written out: pool the scaled boxes on the resized image's map."""
    from detaccel.ops import spp_pool

    resized = _resized(image, scale)
    shared = model.shared_features(resized)
    rois = torch.cat((torch.zeros(len(proposals), 1), proposals * scale), dim=1)
    pooled = spp_pool(shared, rois, model.roi_features.levels, model.roi_features.spatial_scale)
    return model._detections(pooled, [proposals], [tuple(image.shape[-2:])])[0]


def test_one_scale_equals_single_scale_detection(model_and_image):
    model, image = model_and_image
    proposals = torch.tensor([[4.0, 6, 60, 50], [30, 20, 120, 90], [0, 0, 20, 12]])
    single = _detect_single(model, image, 1.0, proposals)
    (multi,) = detect_on_maps(
        model, [model.shared_features(image)], [[1.0]], [proposals], [tuple(image.shape[-2:])]
    )
    assert len(single[0]) > 0
    for a, b in zip(single, multi, strict=True):
        torch.testing.assert_close(a, b)


def test_a_batch_gives_each_image_its_own_detections(model_and_image):
    model, image = model_and_image
    other = torch.randn(1, 3, 96, 128)
    first = torch.tensor([[4.0, 6, 60, 50], [30, 20, 120, 90]])
    second = torch.tensor([[10.0, 40, 50, 70]])
    batch = detect_on_maps(
        model,
        [model.shared_features(torch.cat((image, other)))],
        [[1.0, 1.0]],
        [first, second],
        [(96, 128), (96, 128)],
    )
    alone = [
        detect_on_maps(model, [model.shared_features(x)], [[1.0]], [p], [(96, 128)])[0]
        for x, p in ((image, first), (other, second))
    ]
    for together, single in zip(batch, alone, strict=True):
        for a, b in zip(together, single, strict=True):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize(("roi_size", "chosen"), [(1e4, 1), (1.0, 0)])
def test_each_roi_is_pooled_on_its_assigned_scale(model_and_image, roi_size, chosen):
    model, image = model_and_image
    scales = [0.75, 1.5]
    proposals = torch.tensor([[4.0, 6, 60, 50], [30, 20, 120, 90], [10, 40, 50, 70]])
    maps = [model.shared_features(_resized(image, s)) for s in scales]
    model.roi_size = roi_size
    (multi,) = detect_on_maps(model, maps, [[s] for s in scales], [proposals], [tuple(image.shape[-2:])])
    expected = _detect_single(model, image, scales[chosen], proposals)
    other = _detect_single(model, image, scales[1 - chosen], proposals)
    for a, b in zip(expected, multi, strict=True):
        torch.testing.assert_close(a, b)
    assert not torch.allclose(other[1], multi[1])  # the other scale gives other scores


def test_multiscale_bad_arguments(model_and_image):
    model, image = model_and_image
    with pytest.raises(ValueError, match="one feature map per scale"):
        detect_on_maps(
            model, [model.shared_features(image)], [[1.0], [2.0]], [torch.zeros(0, 4)], [(96, 128)]
        )
    with pytest.raises(ValueError, match="one entry per image"):
        detect_on_maps(model, [model.shared_features(image)], [[1.0, 1.0]], [torch.zeros(0, 4)], [(96, 128)])
    ((boxes, scores, labels),) = detect_on_maps(
        model, [model.shared_features(image)], [[1.0]], [torch.zeros(0, 4)], [(96, 128)]
    )
    assert boxes.shape == (0, 4) and scores.shape == (0,) and labels.shape == (0,)


@pytest.mark.parametrize(
    ("family", "data", "message"),
    [
        ("sppnet", {"test_scales": [48, 96]}, "must include data.test_scale"),
        ("sppnet", {"test_scales": [72, 72]}, "distinct positive sizes"),
        ("sppnet", {"test_scales": [72, -1]}, "distinct positive sizes"),
        ("rcnn", {"test_scales": [48, 72]}, "R-CNN warps each region"),
        ("fast_rcnn", {"test_roi_size": 0}, "data.test_roi_size"),
    ],
)
def test_multiscale_config_errors(tmp_path, family, data, message):
    mapping = tiny_config_dict(tmp_path, family)
    mapping["data"].update(data)
    with pytest.raises(ConfigError, match=message):
        config_from_dict(mapping)


def test_sppnet_trains_and_evaluates_at_several_scales(tmp_path):
    root = tiny_dataset(tmp_path / "data")
    config = tiny_config(
        root,
        "sppnet",
        data={
            "train_scales": [56, 72, 88],
            "test_scale": 72,
            "test_scales": [56, 72, 88],
            "test_roi_size": 32,
        },
        train={"max_iter": 2, "eval_after_training": True},
    )
    result = Trainer(config, tmp_path / "out", DistInfo(), progress=False).train()
    assert 0.0 <= result["eval"]["metrics"]["voc07"]["mAP"] <= 1.0
    assert (tmp_path / "out" / "detections_coco.json").is_file()


@pytest.mark.parametrize("generator_name", ["sliding_window", "r2cnn"])
def test_the_pipeline_runs_the_backbone_once_per_scale(tmp_path, generator_name):
    from detaccel.benchmarks.detection import detect_image
    from detaccel.engine.data import load_split

    root = tiny_dataset(tmp_path / "data")
    config = tiny_config(root, "sppnet", data={"test_scales": [48, 72, 96], "test_roi_size": 32})
    dataset = load_split(config, "test")
    model = build_detector(config, len(dataset.class_names)).eval()
    if generator_name == "r2cnn":
        model.set_proposal_generator("r2cnn", {"max_proposals": 12})
    else:
        model.set_proposal_generator("sliding_window", {"scales": [16, 32], "max_proposals": 12})
    calls = []
    model.backbone.register_forward_hook(lambda module, args, out: calls.append(tuple(args[0].shape[-2:])))
    record = dataset.records[0]
    detections, proposals = detect_image(model, record)
    # One backbone pass per test scale (96x72 images: shorter side 48, 72, 96), none for R²-CNN.
    assert sorted(calls) == [(48, 64), (72, 96), (96, 128)]
    assert 0 < len(proposals) <= 12
    assert proposals[:, 2].max() <= record.width and proposals[:, 3].max() <= record.height
    assert len(detections.boxes) == len(detections.scores) == len(detections.labels)
