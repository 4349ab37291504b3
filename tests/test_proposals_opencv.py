import numpy as np
import pytest

from detaccel.data.transforms import resize_scale
from detaccel.proposals import build_generator
from detaccel.proposals.edge_boxes import edge_maps
from detaccel.proposals.image import rescale_boxes, resize_image, to_bgr8
from tests.proposal_images import scene, variants

KINDS = ["color", "gray", "bgra", "uint16", "tiny", "one_pixel"]


def assert_valid(result, image):
    height, width = image.shape[:2]
    boxes = result.boxes
    assert result.image_size == (height, width)
    assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 4
    assert np.isfinite(boxes).all()
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= width - 1).all() and (boxes[:, 3] <= height - 1).all()
    assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
    if result.scores is not None:
        assert result.scores.shape == (len(boxes),)
        assert (np.diff(result.scores) <= 0).all()
    assert result.timings["proposals"] >= 0 and result.timings["postprocess"] >= 0


@pytest.fixture(scope="module")
def images():
    return variants(scene())


@pytest.mark.parametrize("kind", KINDS)
def test_selective_search_fast(images, kind):
    result = build_generator("selective_search", num_threads=1).generate(images[kind])
    assert_valid(result, images[kind])
    assert result.scores is None
    if kind not in ("tiny", "one_pixel"):
        assert len(result) > 10


def test_selective_search_quality_finds_more_boxes(images):
    fast = build_generator("selective_search").generate(images["color"])
    quality = build_generator("selective_search", mode="quality").generate(images["color"])
    assert_valid(quality, images["color"])
    assert len(quality) > len(fast)


def test_selective_search_is_reproducible_with_a_seed(images):
    generator = build_generator("selective_search")
    first, second = generator.generate(images["color"]), generator.generate(images["color"])
    np.testing.assert_array_equal(first.boxes, second.boxes)


def test_selective_search_resizes_and_maps_boxes_back(images):
    image = images["color"]
    small = build_generator("selective_search", max_side=80).generate(image)
    assert_valid(small, image)
    assert small.boxes[:, 2].max() > 150  # boxes reach the right part of the 160 px image
    big = build_generator("selective_search", max_side=320, upscale=True).generate(image)
    assert_valid(big, image)


def test_selective_search_caps_its_output(images):
    result = build_generator("selective_search", max_proposals=5).generate(images["color"])
    assert len(result) == 5


@pytest.mark.parametrize("kind", KINDS)
def test_edge_boxes(images, kind):
    result = build_generator("edge_boxes", num_threads=1).generate(images[kind])
    assert_valid(result, images[kind])
    assert result.scores is not None
    if kind not in ("tiny", "one_pixel"):
        assert len(result) > 10


def test_edge_boxes_finds_the_drawn_rectangle(images):
    result = build_generator("edge_boxes").generate(images["color"])
    target = np.array([10, 12, 60, 70], np.float32)
    ious = box_iou(result.boxes, target)
    assert ious.max() > 0.7


def test_edge_boxes_on_a_flat_image_is_empty():
    result = build_generator("edge_boxes").generate(np.full((60, 80, 3), 128, np.uint8))
    assert len(result) == 0 and result.scores.shape == (0,)


def test_edge_maps_are_thin_normalised_and_oriented():
    image = np.zeros((40, 60, 3), np.uint8)
    image[:, 30:] = 200  # one vertical step edge
    edges, orientation = edge_maps(image)
    assert edges.dtype == np.float32 and orientation.dtype == np.float32
    assert edges.max() == pytest.approx(1.0) and edges.min() == 0.0
    columns = np.flatnonzero(edges[20] > 0)
    assert len(columns) == 1 and abs(columns[0] - 29.5) <= 1
    assert orientation[20, columns[0]] == pytest.approx(0.0, abs=1e-3)  # normal along +x
    transposed_edges, transposed = edge_maps(np.ascontiguousarray(image.transpose(1, 0, 2)))
    rows = np.flatnonzero(transposed_edges[:, 20] > 0)
    assert transposed[rows[0], 20] == pytest.approx(np.pi / 2, abs=1e-3)  # normal along +y
    assert ((orientation >= 0) & (orientation < np.pi)).all()


def test_resize_rule_and_box_rescaling():
    assert resize_scale(375, 500, max_side=250, upscale=False) == 0.5
    assert resize_scale(100, 200, max_side=500, upscale=False) == 1.0
    assert resize_scale(100, 200, max_side=500, upscale=True) == 2.5
    assert resize_scale(300, 1200, short_side=600, max_side=1000) == pytest.approx(1000 / 1200)
    image = to_bgr8(np.zeros((10, 20), np.uint8))
    resized, factors = resize_image(image, 0.5)
    assert resized.shape == (5, 10, 3) and factors == (0.5, 0.5)
    # Resized pixels 0..9 x 0..4 cover original pixels 0..19 x 0..9.
    np.testing.assert_allclose(rescale_boxes(np.array([[0, 0, 9, 4]]), factors), [[0, 0, 19, 9]])
    np.testing.assert_allclose(rescale_boxes(np.array([[2, 1, 2, 1]]), factors), [[4, 2, 5, 3]])


def box_iou(boxes, box):
    x1 = np.maximum(boxes[:, 0], box[0])
    y1 = np.maximum(boxes[:, 1], box[1])
    x2 = np.minimum(boxes[:, 2], box[2])
    y2 = np.minimum(boxes[:, 3], box[3])
    inter = np.clip(x2 - x1 + 1, 0, None) * np.clip(y2 - y1 + 1, 0, None)
    area = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    return inter / (area + (box[2] - box[0] + 1) * (box[3] - box[1] + 1) - inter)
