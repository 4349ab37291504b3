"""R²-CNN's map reductions and contrast scores."""

import numpy as np
import pytest
import torch

from detaccel.proposals.r2cnn_scoring import contrast_scores, reduce_channels
from detaccel.proposals.receptive_field import ReceptiveField

UNIT = (ReceptiveField(1.0, 0.0, 1.0), ReceptiveField(1.0, 0.0, 1.0))


def test_reductions():
    features = torch.tensor([[[[1.0, -2.0]], [[-3.0, 4.0]]]])  # [1, 2, 1, 2]
    torch.testing.assert_close(reduce_channels(features, "sum"), features)
    torch.testing.assert_close(reduce_channels(features, "abs"), features.abs())
    for removed in ("mean", "l2"):
        with pytest.raises(ValueError, match="reduction"):
            reduce_channels(features, removed)


def test_contrast_ranks_a_bright_blob_before_background():
    integrated = np.zeros((20, 20))
    integrated[5:9, 5:9] = 1.0
    boxes = np.array(
        [
            [12, 12, 15, 15],  # background
            [5, 5, 8, 8],  # the blob
            [3, 3, 10, 10],  # the blob with a margin
            [0, 0, 19, 19],  # everything: no ring left
        ],
        np.float64,
    )
    scores = contrast_scores(integrated, boxes, UNIT)
    assert scores[1] > scores[2] > scores[0]
    assert scores[0] == pytest.approx(0.0)
    assert scores[1] == pytest.approx(1.0)  # all blob inside, nothing in the ring
    assert scores[2] == pytest.approx(16 / 64)  # 16 blob cells of 64, ring empty
    # Pixel boxes map to cells through the receptive field.
    field = (ReceptiveField(4.0, 1.5, 8.0), ReceptiveField(4.0, 1.5, 8.0))
    pixel = boxes * 4 + 1.5
    np.testing.assert_allclose(contrast_scores(integrated, pixel, field), scores, atol=1e-6)
    assert contrast_scores(integrated, np.zeros((0, 4)), UNIT).shape == (0,)


def _blob_features() -> torch.Tensor:
    """Signed features: a strong negative blob at rows 4-7, columns 10-15 of a 16 x 24 map."""
    features = 0.05 * torch.randn(1, 4, 16, 24, generator=torch.Generator().manual_seed(3))
    features[:, :, 4:8, 10:16] -= 2.0
    return features


def test_generator_ranking_puts_the_object_first_and_applies_nms():
    from torchvision.ops import box_iou

    from detaccel.proposals.r2cnn import R2CNN

    field = (8.0, 3.5, 8.0)
    ranked = R2CNN(backbone=None, receptive_field=field, reduction="abs", ranking="contrast", nms_iou=0.5)
    ((boxes, scores),) = ranked.boxes_from_features(_blob_features())
    assert scores is not None and len(scores) == len(boxes)
    assert np.all(np.diff(scores) <= 0), "boxes are not sorted by score"
    overlaps = box_iou(torch.from_numpy(boxes), torch.from_numpy(boxes)).fill_diagonal_(0)
    assert float(overlaps.max()) <= 0.5 + 1e-6
    blob = torch.tensor([[10 * 8.0, 4 * 8.0, 16 * 8.0 - 1, 8 * 8.0 - 1]], dtype=torch.float64)
    assert float(box_iou(torch.from_numpy(boxes[:1]), blob)) > 0.5


def test_generator_abs_reduction_finds_a_signed_blob_that_sum_misses():
    from torchvision.ops import box_iou

    from detaccel.proposals.r2cnn import R2CNN

    field = (8.0, 3.5, 8.0)
    blob = torch.tensor([[10 * 8.0, 4 * 8.0, 16 * 8.0 - 1, 8 * 8.0 - 1]], dtype=torch.float64)
    best = {}
    for reduction in ("sum", "abs"):
        generator = R2CNN(backbone=None, receptive_field=field, reduction=reduction, scale_factors=())
        ((boxes, _),) = generator.boxes_from_features(_blob_features())
        best[reduction] = float(box_iou(torch.from_numpy(boxes), blob).max()) if len(boxes) else 0.0
    assert best["abs"] > 0.9 > best["sum"]


def test_generator_bad_options():
    from detaccel.proposals.r2cnn import R2CNN

    field = (8.0, 3.5, 8.0)
    with pytest.raises(TypeError, match="levels"):  # quantile levels were removed: no such option
        R2CNN(backbone=None, receptive_field=field, levels="quantile")
    for bad in ({"reduction": "l2"}, {"ranking": "rpn"}, {"nms_iou": 1.5}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            R2CNN(backbone=None, receptive_field=field, **bad)
