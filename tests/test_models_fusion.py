"""Batch norm folded into convolutions, and the backbones' folded channels-last inference copy."""

import copy
from dataclasses import replace

import pytest
import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from detaccel.config.schema import BackboneConfig
from detaccel.models.backbones import build_backbone
from detaccel.models.fusion import fold_batchnorm, fold_conv_bn, inference_copy


def _with_statistics(norm: nn.Module, channels: int, seed: int) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        norm.weight.copy_(torch.rand(channels, generator=generator) + 0.5)
        norm.bias.copy_(torch.randn(channels, generator=generator))
        norm.running_mean.copy_(torch.randn(channels, generator=generator))
        norm.running_var.copy_(torch.rand(channels, generator=generator) + 0.1)
    return norm


@pytest.mark.parametrize("norm_type", [nn.BatchNorm2d, FrozenBatchNorm2d])
@pytest.mark.parametrize("groups,bias", [(1, False), (1, True), (6, False)])
def test_folded_conv_computes_conv_then_norm(norm_type, groups, bias):
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 6, 3, stride=2, padding=1, groups=groups, bias=bias)
    norm = _with_statistics(norm_type(6), 6, seed=1).eval()
    x = torch.randn(2, 6, 11, 9)
    folded = fold_conv_bn(conv, norm)
    assert folded.bias is not None and folded.groups == groups and folded.stride == (2, 2)
    torch.testing.assert_close(folded(x), norm(conv(x)), atol=1e-5, rtol=1e-5)


def test_fold_rejects_mismatched_or_statistics_free_norms():
    conv = nn.Conv2d(3, 4, 1)
    with pytest.raises(ValueError, match="4"):
        fold_conv_bn(conv, nn.BatchNorm2d(5))
    with pytest.raises(ValueError, match="running statistics"):
        fold_conv_bn(conv, nn.BatchNorm2d(4, track_running_stats=False))


def test_fold_batchnorm_leaves_no_norm_after_a_conv_and_keeps_indices():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1)
    )
    _with_statistics(model[1], 4, seed=2)
    _with_statistics(model[3], 4, seed=3)
    model.eval()
    x = torch.randn(1, 3, 8, 8)
    expected = model(x)
    folded = inference_copy(model)
    assert isinstance(model[1], nn.BatchNorm2d)  # the original is untouched
    assert isinstance(folded[1], nn.Identity) and len(folded) == 5
    assert isinstance(folded[3], nn.BatchNorm2d)  # after a ReLU: nothing to fold into
    assert not any(p.requires_grad for p in folded.parameters())
    torch.testing.assert_close(folded(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "config,folds",
    [
        (BackboneConfig(name="small"), 5),  # five conv-BN-ReLU layers to stride 8
        # stem; 11 blocks to stride 16, the first without expansion
        (BackboneConfig(name="efficientnet_lite0", pretrained="imagenet"), 1 + 2 + 10 * 3),
        (BackboneConfig(name="resnet18"), 1 + 3 * 2 * 2 + 2),  # stem; 3 stages of 2 blocks; 2 downsamples
    ],
    ids=lambda v: v.name if isinstance(v, BackboneConfig) else str(v),
)
def test_backbone_inference_runs_a_folded_copy_equal_to_the_body(config, folds):
    backbone = build_backbone(config).eval()
    if not config.pretrained:  # statistics that make folding visible (ImageNet's are already)
        for module in backbone.body.modules():
            if isinstance(module, nn.BatchNorm2d | FrozenBatchNorm2d):
                _with_statistics(module, module.running_mean.numel(), seed=4)
    body = inference_copy(backbone.body, channels_last=True)
    assert not any(isinstance(m, nn.BatchNorm2d | FrozenBatchNorm2d) for m in body.modules())
    assert fold_batchnorm(body) == 0  # nothing left to fold
    assert fold_batchnorm(copy.deepcopy(backbone.body)) == folds
    images = torch.randn(1, 3, 64, 96)
    plain = build_backbone(replace(config, fold_batchnorm=False, channels_last=False)).eval()
    plain.load_state_dict(backbone.state_dict())
    with torch.no_grad():
        expected = plain(images)
        got = backbone.forward_stages(images, ["stride4"])
    assert got["out"].is_contiguous() and got["stride4"].is_contiguous()
    scale = float(expected.abs().max())  # random statistics grow activations layer by layer
    torch.testing.assert_close(got["out"], expected, atol=1e-5 * scale, rtol=1e-4)


def test_inference_copy_follows_weight_changes_and_training_uses_the_body():
    backbone = build_backbone(BackboneConfig(name="small")).eval()
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        before = backbone(images)
        backbone.body[0].weight.mul_(2.0)  # an in-place update, as an optimizer step makes
        after = backbone(images)
    assert not torch.allclose(before, after)
    reference = build_backbone(BackboneConfig(name="small", fold_batchnorm=False, channels_last=False))
    reference.load_state_dict(backbone.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(after, reference.eval()(images), atol=1e-4, rtol=1e-4)
    backbone.train()
    backbone(images).sum().backward()  # training runs body itself: its parameters get gradients
    assert backbone.body[0].weight.grad is not None
