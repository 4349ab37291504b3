import numpy as np
import pytest

from detaccel.data import CategoryWarning, dataset_from_config, load_coco, load_dataset, resolve_coco_paths
from tests.data_builders import make_coco, write_test_jpeg

CATEGORIES = [{"id": 10, "name": "zebra"}, {"id": 3, "name": "ant"}, {"id": 7, "name": "moth"}]
IMAGES = [
    {"id": 42, "file_name": "a.jpg", "width": 64, "height": 48},
    {"id": 5, "file_name": "b.jpg", "width": 64, "height": 48},
    {"id": 9, "file_name": "empty.jpg", "width": 64, "height": 48},
]
ANNOTATIONS = [
    {"id": 1, "image_id": 42, "category_id": 10, "bbox": [2, 3, 10, 20], "area": 150.5, "iscrowd": 0},
    {"id": 2, "image_id": 42, "category_id": 3, "bbox": [0.5, 1.25, 4, 5], "area": 20, "iscrowd": 1},
    {
        "id": 3,
        "image_id": 5,
        "category_id": 7,
        "bbox": [60, 40, 0.5, 8],
        "area": 4,
        "iscrowd": 0,
        "difficult": 1,
    },
]


def test_loads_instances_with_contiguous_labels(tmp_path):
    path = make_coco(tmp_path, IMAGES, ANNOTATIONS, CATEGORIES)
    dataset = load_coco(path, tmp_path / "images")
    assert dataset.format == "coco"
    assert dataset.split == "val"
    assert dataset.class_names == ("ant", "moth", "zebra")  # sorted by category id
    assert dataset.category_ids == (3, 7, 10)
    assert [r.image_id for r in dataset] == [42, 5, 9]
    a, b, empty = dataset.records
    np.testing.assert_allclose(a.boxes, [[2, 3, 11, 22], [0.5, 1.25, 3.5, 5.25]])
    assert a.labels.tolist() == [2, 0]
    assert a.crowd.tolist() == [False, True]
    assert a.difficult.tolist() == [False, False]
    np.testing.assert_allclose(b.boxes, [[60, 40, 60, 47]])  # width under a pixel: x2 = x1
    assert b.difficult.tolist() == [True]
    assert empty.num_objects == 0  # kept for evaluation
    assert empty.file_path == str(tmp_path / "images" / "empty.jpg")


def test_keeps_the_ground_truth_as_written(tmp_path):
    path = make_coco(tmp_path, IMAGES, ANNOTATIONS, CATEGORIES)
    gt = load_coco(path, tmp_path / "images").coco_annotations
    assert [c["id"] for c in gt["categories"]] == [3, 7, 10]
    assert [a["bbox"] for a in gt["annotations"]] == [a["bbox"] for a in ANNOTATIONS]
    assert [a["area"] for a in gt["annotations"]] == [150.5, 20, 4]
    assert [a["iscrowd"] for a in gt["annotations"]] == [0, 1, 0]
    assert [im["id"] for im in gt["images"]] == [42, 5, 9]


def test_split_directories(tmp_path):
    path = make_coco(tmp_path, IMAGES[:1], ANNOTATIONS[:1], CATEGORIES, split="train2017", write_images=False)
    (tmp_path / "images").rmdir()
    write_test_jpeg(tmp_path / "train2017" / "a.jpg")
    assert resolve_coco_paths(tmp_path, "train2017") == (path, tmp_path / "train2017")
    with pytest.warns(CategoryWarning, match=r"3 'ant' \(no objects\), 7 'moth' \(no objects\)"):
        dataset = load_dataset("coco", tmp_path, "train2017")
    assert dataset.class_names == ("zebra",)
    assert dataset.annotation_file == path
    assert dataset[0].file_path == str(tmp_path / "train2017" / "a.jpg")


def test_dataset_from_config(tmp_path):
    make_coco(tmp_path, IMAGES, ANNOTATIONS, CATEGORIES)
    dataset = dataset_from_config(
        {"format": "coco", "root": str(tmp_path), "split": "val", "check_images": True}
    )
    assert len(dataset) == 3
