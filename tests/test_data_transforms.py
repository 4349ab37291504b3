import cv2
import numpy as np
import pytest
import torch

from detaccel.data import ImageRecord, load_voc, read_image
from detaccel.data.samples import DetectionSamples, collate_samples, inference_samples
from detaccel.data.synthetic import write_synthetic
from detaccel.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    InferenceTransform,
    Resize,
    TrainTransform,
    batch_images,
    hflip_boxes,
    hflip_image,
    normalize,
    resize_image,
    resize_scale,
)


@pytest.mark.parametrize(
    ("height", "width", "target", "max_size", "expected"),
    [
        (240, 320, 600, 1000, 2.5),  # shorter side to 600
        (100, 500, 600, 1000, 2.0),  # longer side capped at 1000
        (375, 500, 600, 1000, 1.6),
        (480, 640, 240, 1000, 0.5),  # shrinking
    ],
)
def test_resize_scale(height, width, target, max_size, expected):
    assert resize_scale(height, width, target, max_size) == pytest.approx(expected)


def test_resize_image_size():
    image = np.zeros((240, 320, 3), np.uint8)
    assert resize_image(image, 2.5).shape == (600, 800, 3)
    assert resize_image(image, 1.0) is image


def test_read_image_is_rgb(tmp_path):
    bgr = np.zeros((8, 10, 3), np.uint8)
    bgr[..., 2] = 255  # red in OpenCV's BGR order
    cv2.imwrite(str(tmp_path / "red.png"), bgr)
    image = read_image(tmp_path / "red.png")
    assert image.shape == (8, 10, 3)
    assert image[0, 0].tolist() == [255, 0, 0]


def test_horizontal_flip_moves_boxes_with_the_pixels():
    image = np.zeros((20, 30, 3), np.uint8)
    boxes = np.array([[2, 3, 9, 11], [0, 0, 29, 19]], np.float32)
    image[3:12, 2:10] = 255  # pixels of the first (inclusive) box
    flipped, flipped_boxes = hflip_image(image), hflip_boxes(boxes, 30)
    np.testing.assert_array_equal(flipped_boxes, [[20, 3, 27, 11], [0, 0, 29, 19]])
    x1, y1, x2, y2 = flipped_boxes[0].astype(int)
    assert (flipped[y1 : y2 + 1, x1 : x2 + 1] == 255).all()
    assert flipped.sum() == image.sum()
    np.testing.assert_array_equal(hflip_boxes(flipped_boxes, 30), boxes)


def test_normalize():
    image = np.full((4, 5, 3), 255, np.uint8)
    out = normalize(image)
    assert out.shape == (3, 4, 5) and out.dtype == np.float32
    for c in range(3):
        assert out[c, 0, 0] == pytest.approx((1.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c])
    # Every pixel and channel, against the formula in float64 (a channel mix-up or transposition fails).
    image = np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    expected = (image / 255.0 - np.asarray(IMAGENET_MEAN)) / np.asarray(IMAGENET_STD)
    np.testing.assert_allclose(normalize(image), expected.transpose(2, 0, 1), rtol=0, atol=1e-5)


def test_batch_images_pads_bottom_right():
    images = [torch.ones(3, 5, 7), torch.full((3, 9, 4), 2.0)]
    batch, sizes = batch_images(images, size_divisibility=4)
    assert batch.shape == (2, 3, 12, 8)
    assert sizes == [(5, 7), (9, 4)]
    assert batch[0, :, :5, :7].eq(1).all() and batch[0, :, 5:].eq(0).all() and batch[0, :, :, 7:].eq(0).all()
    assert batch[1, :, :9, :4].eq(2).all() and batch[1, :, :, 4:].eq(0).all()


def test_train_transform_is_reproducible_and_multi_scale():
    image = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    boxes = np.array([[10, 5, 20, 30]], np.float32)
    transform = TrainTransform(Resize(scales=(20, 40, 80), max_size=200))
    seen = set()
    for seed in range(20):
        out = transform(image, boxes, np.random.default_rng(seed))
        again = transform(image, boxes, np.random.default_rng(seed))
        assert np.array_equal(out.image, again.image) and out.flipped == again.flipped
        seen.add((out.scale, out.flipped))
        expected = hflip_boxes(boxes, 60) if out.flipped else boxes
        np.testing.assert_allclose(out.boxes, expected * out.scale)
        assert out.image.shape[1:] == (round(40 * out.scale), round(60 * out.scale))
    assert {scale for scale, _ in seen} == {0.5, 1.0, 2.0}
    assert {flipped for _, flipped in seen} == {False, True}


def test_test_transform_gives_every_scale():
    image = np.zeros((40, 60, 3), np.uint8)
    outs = InferenceTransform(Resize(scales=(20, 80), max_size=100))(
        image, np.array([[0, 0, 59, 39]], np.float32)
    )
    assert [o.scale for o in outs] == [0.5, 100 / 60]
    assert [o.image.shape for o in outs] == [(3, 20, 30), (3, 67, 100)]
    assert not any(o.flipped for o in outs)


def test_samples_and_collate(tmp_path):
    root = write_synthetic(tmp_path, "voc", seed=0, num_images=4)
    dataset = load_voc(root, "trainval", "synthetic")
    records = [dataset[0].with_proposals(np.array([[0, 0, 9, 9], [5, 5, 100, 80]])), *dataset.records[1:]]
    samples = DetectionSamples(records, TrainTransform(Resize((120,), 200), flip_probability=1.0))
    first = samples[0]
    assert first["image"].shape == (3, 120, 160)
    assert first["flipped"] and first["scale"] == 0.5
    expected = hflip_boxes(records[0].boxes, 320) * 0.5
    np.testing.assert_allclose(first["boxes"].numpy(), expected)
    np.testing.assert_allclose(first["proposals"].numpy(), hflip_boxes(records[0].proposals, 320) * 0.5)
    batch = collate_samples([samples[0], samples[1]], size_divisibility=32)
    assert batch["images"].shape == (2, 3, 128, 160)
    assert batch["image_sizes"] == [(120, 160), (120, 160)]
    assert isinstance(batch["record"][0], ImageRecord)
    tests = inference_samples(records[0], InferenceTransform(Resize((120, 240), 400)))
    assert [t["image"].shape for t in tests] == [(3, 120, 160), (3, 240, 320)]
    np.testing.assert_allclose(tests[1]["proposals"].numpy(), records[0].proposals * 1.0)
