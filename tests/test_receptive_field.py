import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from detaccel.proposals.backbone import default_cut, flatten_layers, torchvision_features, truncate
from detaccel.proposals.receptive_field import (
    ReceptiveField,
    UnsupportedLayerError,
    cell_boxes_to_pixels,
    minimum_input_size,
    receptive_field,
    receptive_fields,
)


@pytest.fixture(scope="module")
def vgg16_features():
    return torchvision.models.vgg16(weights=None).features


@pytest.fixture(scope="module")
def alexnet_features():
    return torchvision.models.alexnet(weights=None).features


def test_vgg16(vgg16_features):
    assert receptive_field(vgg16_features, 29) == ReceptiveField(stride=16, offset=7.5, extent=196)
    assert receptive_field(vgg16_features, 28) == ReceptiveField(stride=16, offset=7.5, extent=196)
    assert receptive_field(vgg16_features, 30) == ReceptiveField(stride=32, offset=15.5, extent=212)
    assert receptive_field(vgg16_features) == receptive_field(vgg16_features, -1)
    assert receptive_field(vgg16_features, 4) == ReceptiveField(stride=2, offset=0.5, extent=6)
    assert receptive_field(vgg16_features, 16) == ReceptiveField(stride=8, offset=3.5, extent=44)
    assert minimum_input_size(vgg16_features, 29) == (16, 16)


def test_alexnet(alexnet_features):
    assert receptive_field(alexnet_features, 0) == ReceptiveField(stride=4, offset=3.0, extent=11)
    assert receptive_field(alexnet_features, 2) == ReceptiveField(stride=8, offset=7.0, extent=19)
    assert receptive_field(alexnet_features, 5) == ReceptiveField(stride=16, offset=15.0, extent=67)
    assert receptive_field(alexnet_features, 11) == ReceptiveField(stride=16, offset=15.0, extent=163)
    assert receptive_field(alexnet_features, 12) == ReceptiveField(stride=32, offset=31.0, extent=195)
    assert minimum_input_size(alexnet_features, 2) == (15, 15)
    assert minimum_input_size(alexnet_features, 11) == (31, 31)


def test_names_index_nested_sequentials():
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.Sequential(nn.MaxPool2d(2), nn.Sequential(nn.Conv2d(4, 4, 3), nn.ReLU())),
        nn.AvgPool2d(2, stride=2),
    )
    assert [name for name, _ in flatten_layers(net)] == ["0", "1.0", "1.1.0", "1.1.1", "2"]
    assert receptive_field(net, 1) == receptive_field(net, "1") == receptive_field(net, "1.1.1")
    assert receptive_field(net, "1.1.0") == ReceptiveField(stride=2, offset=2.5, extent=8)
    assert receptive_field(net, "1.0") == ReceptiveField(stride=2, offset=0.5, extent=4)
    assert receptive_field(net) == ReceptiveField(stride=4, offset=3.5, extent=10)
    with pytest.raises(ValueError, match=r"no layer named '1\.2'"):
        receptive_field(net, "1.2")
    with pytest.raises(IndexError):
        receptive_field(net, 3)


def test_dilation_same_padding_and_padding_layers():
    net = nn.Sequential(
        nn.ZeroPad2d((2, 0, 2, 0)), nn.Conv2d(1, 1, 3, dilation=2, padding="same"), nn.Conv2d(1, 1, 5)
    )
    assert receptive_field(net) == ReceptiveField(stride=1, offset=0.0, extent=9)


def test_anisotropic_layers():
    net = nn.Sequential(nn.Conv2d(1, 1, (3, 5), stride=(1, 2), padding=(1, 0)))
    x, y = receptive_fields(net)
    assert x == ReceptiveField(stride=2, offset=2.0, extent=5)
    assert y == ReceptiveField(stride=1, offset=0.0, extent=3)
    with pytest.raises(ValueError, match="differs between axes"):
        receptive_field(net)
    assert minimum_input_size(net) == (1, 5)


def test_unsupported_layer_is_named():
    net = nn.Sequential(nn.Conv2d(3, 3, 3), nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(1)))
    with pytest.raises(UnsupportedLayerError, match=r"'1\.1' \(AdaptiveAvgPool2d\)"):
        receptive_field(net)
    assert receptive_field(net, "1.0") == ReceptiveField(stride=1, offset=1.0, extent=3)


def test_receptive_field_matches_gradient_support():
    net = nn.Sequential(
        nn.Conv2d(1, 1, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(1, 1, 5, stride=2, padding=1, dilation=2),
        nn.AvgPool2d(3, stride=1, padding=1),
    )
    for conv in (net[0], net[3]):
        nn.init.constant_(conv.weight, 1.0)
        nn.init.constant_(conv.bias, 1.0)
    field = receptive_field(net)
    image = torch.ones(1, 1, 96, 96, requires_grad=True)
    out = net(image)
    cell = 4
    out[0, 0, cell, cell].backward()
    columns = np.flatnonzero(image.grad[0, 0].abs().sum(0).numpy() > 0)
    centre = field.offset + cell * field.stride
    assert columns[0] == centre - (field.extent - 1) / 2
    assert columns[-1] == centre + (field.extent - 1) / 2


def test_minimum_input_size_is_tight(vgg16_features, alexnet_features):
    for features in (vgg16_features[:30], alexnet_features[:12]):
        height, width = minimum_input_size(features)
        with torch.inference_mode():
            assert features(torch.zeros(1, 3, height, width)).shape[-2:] == (1, 1)
            with pytest.raises(RuntimeError):
                features(torch.zeros(1, 3, height - 1, width - 1))


def test_cell_boxes_to_pixels():
    vgg = ReceptiveField(stride=16, offset=7.5, extent=196)
    np.testing.assert_array_equal(cell_boxes_to_pixels([[0, 0, 0, 0]], vgg), [[0, 0, 15, 15]])
    np.testing.assert_array_equal(cell_boxes_to_pixels(torch.tensor([[2, 1, 4, 3]]), vgg), [[32, 16, 79, 63]])
    np.testing.assert_array_equal(
        cell_boxes_to_pixels([[2, 1, 4, 3]], vgg, footprint="extent"), [[-58, -74, 169, 153]]
    )
    np.testing.assert_array_equal(
        cell_boxes_to_pixels([[0, 0, 1, 0]], vgg, footprint=5), [[5.5, 5.5, 25.5, 9.5]]
    )
    x = ReceptiveField(stride=4, offset=1.5, extent=10)
    y = ReceptiveField(stride=8, offset=3.5, extent=20)
    np.testing.assert_array_equal(cell_boxes_to_pixels([[1, 1, 2, 2]], (x, y)), [[4, 8, 11, 23]])
    assert cell_boxes_to_pixels(np.zeros((0, 4)), vgg).shape == (0, 4)
    with pytest.raises(ValueError, match="footprint"):
        cell_boxes_to_pixels([[0, 0, 0, 0]], vgg, footprint="cells")


def test_backbone_helpers(vgg16_features):
    assert default_cut(vgg16_features) == "29"
    cut = truncate(vgg16_features, default_cut(vgg16_features))
    assert len(cut) == 30 and cut[0] is vgg16_features[0]
    assert str(torchvision_features("vgg16")) == str(vgg16_features)
    with pytest.raises(ValueError, match="unknown backbone 'resnet18'"):
        torchvision_features("resnet18")
