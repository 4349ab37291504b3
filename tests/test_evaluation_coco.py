"""COCO AP agrees with pycocotools run directly on the same files."""

import json
import math

import numpy as np
import pytest

from detaccel.data import load_coco, load_voc
from detaccel.evaluation import (
    Detections,
    coco_image_ids,
    dataset_ground_truth,
    evaluate_coco,
    evaluate_coco_results,
    evaluate_detections,
    read_coco_detections,
    read_coco_results,
    records_to_coco,
)
from detaccel.evaluation.coco_eval import STAT_NAMES
from tests.data_builders import make_coco, make_voc, pycocotools_stats, voc_object_xml, voc_xml

WIDTH, HEIGHT = 320, 240
CATEGORIES = [{"id": 9, "name": "nine"}, {"id": 2, "name": "two"}, {"id": 5, "name": "five"}]


def ours(result):
    return [result[name] for name in STAT_NAMES]


def random_box(rng, small=False):
    w = rng.uniform(4, 25) if small else rng.uniform(10, 200)
    h = rng.uniform(4, 25) if small else rng.uniform(10, 150)
    return [
        round(rng.uniform(0, WIDTH - w), 2),
        round(rng.uniform(0, HEIGHT - h), 2),
        round(w, 2),
        round(h, 2),
    ]


@pytest.fixture
def coco_files(tmp_path):
    rng = np.random.default_rng(0)
    images = [{"id": 100 + i, "file_name": f"{i}.jpg", "width": WIDTH, "height": HEIGHT} for i in range(6)]
    annotations, results = [], []
    for image in images[:-1]:  # the last image has no objects
        for _ in range(rng.integers(1, 6)):
            bbox = random_box(rng, small=rng.random() < 0.4)
            category = int(rng.choice([9, 2, 5]))
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image["id"],
                    "category_id": category,
                    "bbox": bbox,
                    "area": round(bbox[2] * bbox[3] * rng.uniform(0.5, 1.0), 2),
                    "iscrowd": int(rng.random() < 0.1),
                }
            )
            if rng.random() < 0.8:
                jitter = [round(v + rng.normal(0, 3), 2) for v in bbox[:2]] + [
                    round(max(v + rng.normal(0, 3), 1), 2) for v in bbox[2:]
                ]
                results.append(
                    {
                        "image_id": image["id"],
                        "category_id": category,
                        "bbox": jitter,
                        "score": float(rng.random()),
                    }
                )
    for image in images:
        for _ in range(rng.integers(0, 4)):
            results.append(
                {
                    "image_id": image["id"],
                    "category_id": int(rng.choice([9, 2, 5])),
                    "bbox": random_box(rng),
                    "score": round(float(rng.random()), 3),
                }
            )
    gt_path = make_coco(tmp_path, images, annotations, CATEGORIES)
    results_path = tmp_path / "results.json"
    results_path.write_text(json.dumps(results))
    return gt_path, results_path


def test_coco_dataset_agrees_with_pycocotools(coco_files, tmp_path):
    gt_path, results_path = coco_files
    expected = pycocotools_stats(gt_path, results_path)
    assert not all(math.isnan(v) or v in (0.0, 1.0) for v in expected)  # a non-trivial case
    dataset = load_coco(gt_path, tmp_path / "images")
    result = evaluate_coco_results(
        dataset.records,
        read_coco_results(results_path),
        dataset.class_names,
        ground_truth=dataset_ground_truth(dataset),
        category_ids=dataset.category_ids,
    )
    np.testing.assert_array_equal(ours(result), expected)
    # Through per-image detections (boxes converted to records' convention and back).
    detections = read_coco_detections(results_path, dataset.records, dataset.category_ids)
    converted = evaluate_detections(dataset, detections, ["coco"])["coco"]
    np.testing.assert_allclose(ours(converted), expected, atol=1e-12)
    assert set(converted["AP_per_class"]) == {"two", "five", "nine"}
    assert "Average Precision" in converted["summary"]


def test_voc_dataset_agrees_with_pycocotools_on_the_equivalent_coco_files(tmp_path):
    rng = np.random.default_rng(1)
    classes = ("cat", "dog")
    annotations, gt_json, results = {}, [], []
    for i in range(1, 6):
        objects = []
        for _ in range(rng.integers(1, 5)):
            x1, y1 = rng.integers(1, 200), rng.integers(1, 150)
            x2, y2 = x1 + rng.integers(5, 110), y1 + rng.integers(5, 85)
            name, difficult = classes[rng.integers(2)], int(rng.random() < 0.2)
            objects.append(voc_object_xml(name, (x1, y1, x2, y2), difficult))
            w, h = int(x2 - x1 + 1), int(y2 - y1 + 1)
            gt_json.append(
                {
                    "id": len(gt_json) + 1,
                    "image_id": i,
                    "category_id": classes.index(name) + 1,
                    "bbox": [int(x1 - 1), int(y1 - 1), w, h],
                    "area": w * h,
                    "iscrowd": difficult,
                }
            )
            if rng.random() < 0.8:
                results.append(
                    {
                        "image_id": i,
                        "category_id": classes.index(name) + 1,
                        "bbox": [float(v + rng.integers(-3, 4)) for v in (x1 - 1, y1 - 1, w, h)],
                        "score": float(rng.random()),
                    }
                )
        annotations[f"{i:06d}"] = voc_xml(objects, WIDTH, HEIGHT)
    root = make_voc(tmp_path / "voc", annotations, split="test")
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(
        json.dumps(
            {
                "images": [
                    {"id": i, "width": WIDTH, "height": HEIGHT, "file_name": f"{i:06d}.jpg"}
                    for i in range(1, 6)
                ],
                "annotations": gt_json,
                "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
            }
        )
    )
    results_path = tmp_path / "results.json"
    results_path.write_text(json.dumps(results))
    expected = pycocotools_stats(gt_path, results_path)

    dataset = load_voc(root, "test", classes)
    assert coco_image_ids(dataset.records) == {f"{i:06d}": i for i in range(1, 6)}
    detections = read_coco_detections(results_path, dataset.records, dataset.category_ids)
    result = evaluate_coco(dataset.records, detections, classes)
    np.testing.assert_allclose(ours(result), expected, atol=1e-12)


def _one_image(tmp_path, difficult):
    root = make_voc(
        tmp_path / str(difficult),
        {
            "1": voc_xml(
                [
                    voc_object_xml("cat", (1, 1, 40, 40)),
                    voc_object_xml("cat", (100, 100, 150, 150), difficult),
                ],
                WIDTH,
                HEIGHT,
            )
        },
    )
    return load_voc(root, "train", ["cat"])


def test_difficult_objects_are_ignored(tmp_path):
    detections = {"1": Detections([[0, 0, 39, 39], [99, 99, 149, 149]], [0.5, 0.9], [0, 0])}
    ignored = _one_image(tmp_path, difficult=1)
    assert evaluate_coco(ignored.records, detections, ignored.class_names)["AP"] == pytest.approx(1.0)
    counted = _one_image(tmp_path, difficult=0)
    assert evaluate_coco(counted.records, detections, counted.class_names)["AP"] == pytest.approx(1.0)
    missing_one = {"1": Detections([[0, 0, 39, 39]], [0.5], [0])}
    assert evaluate_coco(ignored.records, missing_one, ignored.class_names)["AP"] == pytest.approx(1.0)
    assert evaluate_coco(counted.records, missing_one, counted.class_names)["AP"] < 0.6


def test_no_detections_and_unmeasurable_values(tmp_path):
    dataset = _one_image(tmp_path, difficult=0)
    result = evaluate_coco(dataset.records, {}, dataset.class_names)
    assert result["AP"] == 0.0 and result["AP50"] == 0.0
    assert math.isnan(result["APs"])  # no small objects: pycocotools' -1
    gt = records_to_coco(dataset.records, dataset.class_names)
    assert [a["bbox"] for a in gt["annotations"]] == [[0.0, 0.0, 40.0, 40.0], [99.0, 99.0, 51.0, 51.0]]
    assert [a["area"] for a in gt["annotations"]] == [1600.0, 2601.0]
