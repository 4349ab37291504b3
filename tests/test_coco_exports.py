"""COCO exports as labelling and hosting tools write them: their layouts, their category quirks,
their bad entries, and results written in the export's own ids that pycocotools scores alike."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest

from detaccel.cli import main
from detaccel.config import ConfigError, config_from_dict
from detaccel.data import (
    CategoryWarning,
    DatasetError,
    dataset_from_config,
    find_coco_split,
    load_dataset,
)
from detaccel.evaluation import (
    Detections,
    evaluate_coco,
    evaluate_detections,
    read_coco_detections,
    write_coco_detections,
)
from detaccel.evaluation.coco_eval import STAT_NAMES
from tests.data_builders import pycocotools_stats, write_test_jpeg

WIDTH, HEIGHT = 96, 72

# As Roboflow writes them: the project as category 0 (a supercategory without objects), then the
# classes; here with a gap in the ids (no 2) and one that does not follow on (7).
CATEGORIES = [
    {"id": 0, "name": "animals", "supercategory": "none"},
    {"id": 1, "name": "cat", "supercategory": "animals"},
    {"id": 3, "name": "dog", "supercategory": "animals"},
    {"id": 7, "name": "owl", "supercategory": "animals"},
]


def _split(first_image_id: int, count: int, objects: list[tuple[int, int, list[float]]], first_ann_id=1):
    """Images numbered from ``first_image_id``; ``objects`` are (image index, category id, bbox)."""
    images = [
        {
            "id": first_image_id + i,
            "file_name": f"img{first_image_id + i}.jpg",
            "width": WIDTH,
            "height": HEIGHT,
        }
        for i in range(count)
    ]
    annotations = [
        {
            "id": first_ann_id + k,
            "image_id": first_image_id + index,
            "category_id": category,
            "bbox": bbox,
            "area": bbox[2] * bbox[3],
            "iscrowd": 0,
            "segmentation": [],
        }
        for k, (index, category, bbox) in enumerate(objects)
    ]
    return {"images": images, "annotations": annotations, "categories": copy.deepcopy(CATEGORIES)}


TRAIN = _split(
    0,
    4,
    [
        (0, 1, [4, 6, 30, 20]),
        (0, 3, [50, 30, 40, 36]),
        (1, 1, [10, 10, 24, 24]),
        (2, 3, [0, 0, 20, 30]),
        (3, 3, [60, 8, 30, 60]),
    ],
)
# The owl has one object in the whole set, in the test split.
VALID = _split(
    100,
    3,
    [
        (0, 1, [8, 8, 40, 30]),
        (0, 3, [52, 20, 40, 50]),
        (1, 7, [20, 10, 30, 30]),
        (1, 1, [2, 40, 20, 20]),
    ],
)


def _write_images(folder: Path, data: dict) -> None:
    for i, image in enumerate(data["images"]):
        write_test_jpeg(folder / image["file_name"], image["width"], image["height"], seed=i)


def _write_json(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def write_export(root: Path, layout: str, splits: dict[str, dict]) -> Path:
    """An export in one tool's layout; returns ``root``.

    roboflow: ``<split>/_annotations.coco.json`` beside the images; coco: the COCO release's
    ``annotations/instances_<split>.json`` and ``<split>/``; cvat: ``annotations/instances_<split>.json``
    with every image in ``images/``; flat: ``labels/<split>.json`` and ``pictures/``.
    """
    for split, data in splits.items():
        if layout == "roboflow":
            _write_json(root / split / "_annotations.coco.json", data)
            _write_images(root / split, data)
        elif layout == "coco":
            _write_json(root / "annotations" / f"instances_{split}.json", data)
            _write_images(root / split, data)
        elif layout == "cvat":
            _write_json(root / "annotations" / f"instances_{split}.json", data)
            _write_images(root / "images", data)
        elif layout == "flat":
            _write_json(root / "labels" / f"{split}.json", data)
            _write_images(root / "pictures", data)
        else:
            raise ValueError(layout)
    return root


def _load(root: Path, layout: str, split: str, **kwargs):
    if layout == "flat":
        return load_dataset(
            "coco", root, split, annotations="labels/{split}.json", images="pictures", **kwargs
        )
    return load_dataset("coco", root, split, **kwargs)


def _same_records(a, b) -> bool:
    return [r.image_id for r in a] == [r.image_id for r in b] and all(
        x.same_annotations(y) for x, y in zip(a, b, strict=True)
    )


@pytest.mark.parametrize("layout", ["roboflow", "coco", "cvat", "flat"])
def test_each_layout_loads_to_the_same_records(tmp_path, layout):
    reference = write_export(tmp_path / "reference", "flat", {"train": TRAIN})
    with pytest.warns(CategoryWarning):
        expected = _load(reference, "flat", "train", check_images=True)
    root = write_export(tmp_path / layout, layout, {"train": TRAIN, "valid": VALID})
    with pytest.warns(CategoryWarning):
        dataset = _load(root, layout, "train", check_images=True)
    assert dataset.split == "train"
    assert dataset.class_names == expected.class_names == ("cat", "dog")
    assert dataset.category_ids == (1, 3)
    assert _same_records(dataset, expected)
    assert [r.image_id for r in dataset] == [0, 1, 2, 3]
    image_dir = {"roboflow": "train", "coco": "train", "cvat": "images", "flat": "pictures"}[layout]
    assert Path(dataset[0].file_path) == root / image_dir / "img0.jpg"
    assert dataset.summary()["objects"] == 5


def test_cvat_default_subset_and_images_in_a_subset_folder(tmp_path):
    # CVAT's "COCO 1.0" without subsets: annotations/instances_default.json beside images/.
    write_export(tmp_path / "cvat", "cvat", {"default": TRAIN})
    with pytest.warns(CategoryWarning):
        flat = load_dataset("coco", tmp_path / "cvat", "default")
    assert flat.root == tmp_path / "cvat" / "images" and len(flat) == 4
    # Exporters that put each subset's images in images/<subset>/: the folder holding them is used.
    root = tmp_path / "subsets"
    _write_json(root / "annotations" / "instances_train.json", TRAIN)
    _write_images(root / "images" / "train", TRAIN)
    (root / "train").mkdir()  # an unrelated, empty folder of the split's name does not win
    with pytest.warns(CategoryWarning):
        dataset = load_dataset("coco", root, "train", check_images=True)
    assert dataset.root == root / "images" / "train"
    assert _same_records(dataset, flat)


def test_roboflow_export_through_the_cli(tmp_path, capsys):
    root = write_export(tmp_path, "roboflow", {"train": TRAIN, "valid": VALID, "test": VALID})
    assert main(["data", "check", "--format", "coco", "--root", str(root), "--split", "train"]) == 0
    captured = capsys.readouterr()
    assert "split train: 4 images, 5 objects" in captured.out
    assert (
        "categories left out of the class list (not trained or scored): 0 'animals' (no objects), "
        "7 'owl' (no objects)" in captured.err
    )

    assert main(["data", "check", "--format", "coco", "--root", str(root), "--split", "val"]) == 2
    err = capsys.readouterr().err
    assert (
        "no COCO split 'val' (looked for annotations/instances_val.json and val/_annotations.coco.json)"
        in err
    )
    assert "splits found: test, train, valid" in err
    assert "--skip-bad" not in err  # it cannot help here

    file = root / "valid" / "_annotations.coco.json"
    assert main(["data", "check", "--format", "coco", "--annotations", str(file), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["split"] == "valid" and summary["images"] == 3 and summary["objects"] == 4
    assert summary["objects_per_class"] == {"cat": 2, "dog": 1, "owl": 1}
    assert summary["left_out_categories"] == [{"id": 0, "name": "animals", "objects": 0}]


def test_explicit_annotation_file_and_image_folder(tmp_path, capsys):
    _write_json(tmp_path / "export" / "labels.json", TRAIN)
    _write_images(tmp_path / "photos", TRAIN)
    args = ["data", "check", "--format", "coco", "--annotations", str(tmp_path / "export" / "labels.json")]
    assert main(args) == 2  # the images are elsewhere
    err = capsys.readouterr().err
    assert "none of its 4 images is in the image folder (looked in:" in err
    assert "--images DIR" in err and "--skip-bad" not in err
    assert main([*args, "--images", str(tmp_path / "photos"), "--split", "mine"]) == 0
    assert "coco " + str(tmp_path / "photos") + " split mine: 4 images, 5 objects" in capsys.readouterr().out


def test_not_a_coco_export_names_what_was_looked_for(tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    assert main(["data", "check", "--format", "coco", "--root", str(tmp_path), "--split", "train"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path}: not a COCO dataset (looked for annotations/instances_train.json and " in err
    assert "--annotations FILE --images DIR" in err and "--skip-bad" not in err
    # A Roboflow split folder given as the root:
    write_export(tmp_path / "rf", "roboflow", {"train": TRAIN})
    with pytest.raises(
        DatasetError, match=r"this folder holds one split .*give its parent folder with split 'train'"
    ):
        find_coco_split(tmp_path / "rf" / "train", "train")
    assert main(["data", "check", "--format", "coco", "--split", "train"]) == 2
    assert "give --root and --split (COCO: or --annotations FILE)" in capsys.readouterr().err


def test_supercategory_and_id_gap_give_the_class_list_and_a_warning(tmp_path):
    root = write_export(tmp_path, "roboflow", {"valid": VALID})
    with pytest.warns(
        CategoryWarning, match=r"categories left out of the class list: 0 'animals' \(no objects\)$"
    ):
        dataset = load_dataset("coco", root, "valid")
    assert dataset.class_names == ("cat", "dog", "owl")  # in id order, category 0 left out
    assert dataset.category_ids == (1, 3, 7)
    assert dataset.categories == {1: "cat", 3: "dog", 7: "owl"}
    assert [r.labels.tolist() for r in dataset] == [[0, 1], [2, 0], []]
    assert [(c.id, c.name, c.objects) for c in dataset.left_out_categories] == [(0, "animals", 0)]
    assert [c["id"] for c in dataset.coco_annotations["categories"]] == [1, 3, 7]


def test_test_split_loads_with_the_training_classes(tmp_path):
    root = write_export(tmp_path, "roboflow", {"train": TRAIN, "valid": VALID})
    with pytest.warns(CategoryWarning, match=r"0 'animals' \(no objects\), 7 'owl' \(no objects\)"):
        train = load_dataset("coco", root, "train")
    assert train.class_names == ("cat", "dog")
    # The owl's one object is in the test split: it is left out there too, and of the mean AP.
    with pytest.warns(CategoryWarning, match=r"0 'animals' \(no objects\), 7 'owl' \(1 object left out\)"):
        test = load_dataset("coco", root, "valid", classes=list(train.class_names))
    assert test.class_names == train.class_names and test.category_ids == train.category_ids
    assert [r.labels.tolist() for r in test] == [[0, 1], [0], []]
    assert {a["category_id"] for a in test.coco_annotations["annotations"]} == {1, 3}
    perfect = {
        r.image_id: Detections(r.boxes, np.ones(r.num_objects), r.labels) for r in test if r.num_objects
    }
    result = evaluate_detections(test, perfect, ["coco"])["coco"]
    assert result["AP"] == pytest.approx(1.0)  # the owl, never detected, does not count
    assert list(result["AP_per_class"]) == ["cat", "dog"] and result["category_ids"] == [1, 3]


def test_class_names_pick_categories(tmp_path):
    root = write_export(tmp_path, "coco", {"valid": VALID})
    with pytest.warns(CategoryWarning, match=r"1 'cat' \(2 objects left out\)"):
        dataset = load_dataset("coco", root, "valid", classes="owl,dog")
    assert dataset.class_names == ("owl", "dog") and dataset.category_ids == (7, 3)
    assert [r.labels.tolist() for r in dataset] == [[1], [0], []]
    with pytest.raises(
        DatasetError, match=r"class 'horse' is not one of its categories \(animals, cat, dog, owl\)"
    ):
        load_dataset("coco", root, "valid", classes=["cat", "horse"])


def test_supercategory_named_like_its_class(tmp_path):
    # A one-class project whose supercategory entry carries the class's own name.
    data = copy.deepcopy(TRAIN)
    data["categories"] = [
        {"id": 0, "name": "dog", "supercategory": "none"},
        {"id": 1, "name": "cat", "supercategory": "dog"},
        {"id": 3, "name": "dog", "supercategory": "dog"},
    ]
    root = write_export(tmp_path, "roboflow", {"train": data})
    with pytest.warns(CategoryWarning, match=r"0 'dog' \(no objects\)"):
        dataset = load_dataset("coco", root, "train")
    assert dataset.class_names == ("cat", "dog") and dataset.category_ids == (1, 3)
    with pytest.warns(CategoryWarning):
        named = load_dataset("coco", root, "train", classes=["dog"])
    assert named.category_ids == (3,)
    # Two same-named categories that both have objects cannot be told apart.
    data["annotations"][0]["category_id"] = 0
    _write_json(root / "train" / "_annotations.coco.json", data)
    with pytest.raises(DatasetError, match="categories 0 and 3 are both named 'dog' and both have objects"):
        load_dataset("coco", root, "train")


def test_no_category_with_objects(tmp_path):
    data = {**copy.deepcopy(TRAIN), "annotations": []}
    root = write_export(tmp_path, "roboflow", {"test": data})
    with pytest.raises(DatasetError, match=r"none of its 4 categories has an object.*--classes NAMES"):
        load_dataset("coco", root, "test")
    with pytest.warns(CategoryWarning):
        dataset = load_dataset("coco", root, "test", classes=["cat", "dog"])
    assert len(dataset) == 4 and dataset.summary()["objects"] == 0


def test_missing_iscrowd_and_area(tmp_path):
    data = copy.deepcopy(VALID)
    for ann in data["annotations"]:
        del ann["iscrowd"], ann["area"]
    root = write_export(tmp_path, "roboflow", {"valid": data})
    with pytest.warns(CategoryWarning):
        dataset = load_dataset("coco", root, "valid")
    gt = dataset.coco_annotations["annotations"]
    assert [a["area"] for a in gt] == [a["bbox"][2] * a["bbox"][3] for a in VALID["annotations"]]
    assert [a["iscrowd"] for a in gt] == [0, 0, 0, 0]
    assert not any(r.crowd.any() for r in dataset)
    perfect = {r.image_id: Detections(r.boxes, np.ones(r.num_objects), r.labels) for r in dataset}
    assert evaluate_detections(dataset, perfect, ["coco"])["coco"]["AP"] == pytest.approx(1.0)


def test_annotation_id_zero_is_scored(tmp_path):
    # Tools that number annotations from 0; pycocotools cannot match a ground truth of id 0,
    # so the ground truth kept for evaluation gives it a fresh id.
    data = _split(0, 2, [(0, 1, [4, 6, 30, 20]), (1, 3, [50, 30, 40, 36])], first_ann_id=0)
    root = write_export(tmp_path, "roboflow", {"train": data})
    with pytest.warns(CategoryWarning):
        dataset = load_dataset("coco", root, "train")
    assert [a["id"] for a in dataset.coco_annotations["annotations"]] == [2, 1]
    perfect = {r.image_id: Detections(r.boxes, [0.9], r.labels) for r in dataset}
    result = evaluate_detections(dataset, perfect, ["coco"])["coco"]
    assert result["AP"] == pytest.approx(1.0)
    assert result["AP_per_class"] == {"cat": pytest.approx(1.0), "dog": pytest.approx(1.0)}


def _bad_export(tmp_path: Path) -> Path:
    data = copy.deepcopy(TRAIN)
    data["annotations"][1]["bbox"] = [50, 30, 0, 36]  # zero width
    data["annotations"][2]["id"] = data["annotations"][0]["id"]  # a repeated id
    data["annotations"][4]["bbox"] = [60, 8, 30, 0]  # zero height
    root = write_export(tmp_path, "roboflow", {"train": data})
    write_test_jpeg(root / "train" / "img2.jpg", HEIGHT, WIDTH)  # decodes as 72x96, listed as 96x72
    return root


def test_bad_entries_are_named_and_counted(tmp_path, capsys):
    root = _bad_export(tmp_path)
    with pytest.raises(DatasetError) as info:
        load_dataset("coco", root, "train", check_images=True)
    message = str(info.value)
    assert message.startswith(
        f"{root / 'train' / 'img2.jpg'}: image is 72x96 but _annotations.coco.json says 96x72"
    )
    assert "(width and height swapped: EXIF orientation?)" in message
    assert message.endswith(
        "; 4 problems in all: 2 zero-area boxes, 1 size mismatch, 1 duplicate annotation id"
    )
    assert info.value.skippable

    with pytest.warns(Warning) as caught:
        dataset = load_dataset("coco", root, "train", check_images=True, skip_bad=True)
    problems = [i.problem for i in dataset.issues]
    assert problems[1] == "annotation 2 (image img0.jpg) has a zero-area box (width 0): bbox [50, 30, 0, 36]"
    assert problems[2] == "annotation 1 repeats annotation id 1"
    assert problems[3] == "annotation 5 (image img3.jpg) has a zero-area box (height 0): bbox [60, 8, 30, 0]"
    assert [i.skipped for i in dataset.issues] == ["image", "object", "object", "object"]
    assert len([w for w in caught if "skipped" in str(w.message)]) == 4
    assert [r.image_id for r in dataset] == [0, 1, 3] and dataset.summary()["objects"] == 1
    assert dataset.summary()["skipped_by_kind"] == {
        "zero-area box": 2,
        "size mismatch": 1,
        "duplicate annotation id": 1,
    }

    args = ["data", "check", "--format", "coco", "--root", str(root), "--split", "train"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "4 problems in all" in err and "rerun with --skip-bad" in err
    assert main([*args, "--skip-bad"]) == 0
    out = capsys.readouterr().out
    assert (
        "skipped 4 bad items (1 image, 3 objects): 2 zero-area boxes, 1 size mismatch, "
        "1 duplicate annotation id" in out
    )
    # Without decoding, the size mismatch is not seen.
    assert main([*args, "--skip-bad", "--no-decode"]) == 0
    assert "skipped 3 bad items (0 images, 3 objects)" in capsys.readouterr().out


def test_dataset_config_keys(tmp_path):
    root = write_export(tmp_path, "flat", {"train": TRAIN, "valid": VALID})
    spec = {"format": "coco", "root": str(root), "annotations": "labels/{split}.json", "images": "pictures"}
    with pytest.warns(CategoryWarning):
        dataset = dataset_from_config({**spec, "split": "valid"})
    assert dataset.split == "valid" and len(dataset) == 3
    absolute = {"format": "coco", "annotations": str(root / "labels" / "train.json")}
    with pytest.warns(CategoryWarning):
        assert len(dataset_from_config({**absolute, "images": {"train": str(root / "pictures")}})) == 4
    with pytest.raises(ValueError, match=r"images: no path for split 'train' \(given for: valid\)"):
        dataset_from_config({**absolute, "split": "train", "images": {"valid": "x"}})


def _config(data):
    return {"data": {"format": "coco", "train_split": "train", "test_split": "valid", **data}}


def test_training_config_keys_are_checked():
    config = config_from_dict(_config({"annotations": "/x/{split}/_annotations.coco.json"}))
    assert config.data.annotations == "/x/{split}/_annotations.coco.json" and config.data.root == ""
    mapping = config_from_dict(
        _config({"annotations": {"train": "a.json", "valid": "b.json"}, "images": "i"})
    )
    assert mapping.data.annotations == {"train": "a.json", "valid": "b.json"}
    with pytest.raises(ConfigError, match=r"one file for both data\.train_split and data\.test_split"):
        config_from_dict(_config({"annotations": "export.json"}))
    with pytest.raises(ConfigError, match=r"'data.annotations': no path for split 'valid'"):
        config_from_dict(_config({"annotations": {"train": "a.json"}}))
    with pytest.raises(ConfigError, match=r"'data.images': applies to COCO datasets"):
        config_from_dict({"data": {"root": "r", "images": "i"}})
    with pytest.raises(ConfigError, match=r"'data\.root': a dataset directory is required"):
        config_from_dict(_config({"images": "i"}))


# --- results in the export's own ids, scored by pycocotools alike ---


def _detections(dataset, seed=0):
    """Jittered ground truth (some missed, some with the wrong class) and false positives."""
    rng = np.random.default_rng(seed)
    out = {}
    for record in dataset:
        boxes, scores, labels = [], [], []
        for box, label in zip(record.boxes, record.labels, strict=True):
            if rng.random() < 0.8:
                boxes.append(np.clip(box + rng.normal(0, 2.5, 4), 0, WIDTH - 1))
                scores.append(rng.random())
                wrong = rng.random() < 0.2
                labels.append((label + 1) % len(dataset.class_names) if wrong else label)
        for _ in range(3):
            x, y = rng.uniform(0, WIDTH - 20), rng.uniform(0, HEIGHT - 20)
            boxes.append([x, y, x + rng.uniform(5, 19), y + rng.uniform(5, 19)])
            scores.append(rng.random() * 0.5)
            labels.append(int(rng.integers(len(dataset.class_names))))
        out[record.image_id] = Detections(np.reshape(boxes, (-1, 4)), scores, labels)
    return out


def test_results_json_rescored_by_pycocotools_equals_detaccel(tmp_path):
    root = write_export(tmp_path, "roboflow", {"valid": VALID})
    with pytest.warns(CategoryWarning):
        dataset = load_dataset("coco", root, "valid", check_images=True)
    detections = _detections(dataset)
    results_path = write_coco_detections(
        tmp_path / "detections_coco.json", dataset.records, detections, dataset.category_ids
    )
    results = json.loads(results_path.read_text())
    assert {r["category_id"] for r in results} <= {1, 3, 7}  # the export's own ids, not labels
    assert {r["image_id"] for r in results} == {100, 101, 102}
    ours = evaluate_detections(dataset, detections, ["coco"])["coco"]
    expected = pycocotools_stats(root / "valid" / "_annotations.coco.json", results_path)
    assert 0.05 < expected[0] < 0.95  # a case with something to get wrong
    np.testing.assert_allclose([ours[name] for name in STAT_NAMES], expected, rtol=0, atol=1e-12)
    # And read back, the file scores the same again.
    again = read_coco_detections(results_path, dataset.records, dataset.category_ids)
    assert evaluate_coco(
        dataset.records,
        again,
        dataset.class_names,
        ground_truth=dataset.coco_annotations,
        category_ids=dataset.category_ids,
    )["AP"] == pytest.approx(ours["AP"], abs=1e-12)


def test_labels_beyond_the_class_list_are_refused(tmp_path):
    root = write_export(tmp_path, "roboflow", {"valid": VALID})
    with pytest.warns(CategoryWarning):
        dataset = load_dataset("coco", root, "valid")
    detections = {100: Detections([[0, 0, 9, 9]], [0.5], [3])}
    with pytest.raises(ValueError, match=r"image 100: detection labels 3..3 do not index the 3 classes"):
        write_coco_detections(tmp_path / "d.json", dataset.records, detections, dataset.category_ids)


def test_eval_results_file_scored_by_pycocotools_as_detaccel_prints(tmp_path, capsys):
    from tests.detector_configs import tiny_config_dict

    # Both splits have objects of cat and dog only, so that the class lists agree without naming them.
    valid = copy.deepcopy(VALID)
    valid["annotations"] = [a for a in valid["annotations"] if a["category_id"] != 7]
    root = write_export(tmp_path / "export", "roboflow", {"train": TRAIN, "valid": valid})
    mapping = tiny_config_dict(root)
    mapping["data"].update(format="coco", classes="auto", train_split="train", test_split="valid")
    mapping["train"].update(max_iter=4)
    mapping["eval"].update(metrics=["coco"])
    mapping["proposals"]["cache_dir"] = str(tmp_path / "proposals")
    config_path = tmp_path / "coco.yaml"
    config_path.write_text(json.dumps(mapping))
    out = tmp_path / "run"
    assert main(["train", "--config", str(config_path), "--out", str(out), "--no-progress"]) == 0
    assert "categories left out of the class list" in capsys.readouterr().err
    checkpoint = out / "model_final.pth"
    assert checkpoint.is_file()
    args = ["eval", "--config", str(config_path), "--checkpoint", str(checkpoint), "--out", str(out / "eval")]
    assert main([*args, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "eval" / "eval.json").read_text())["metrics"]["coco"]
    results_path = out / "eval" / "detections_coco.json"
    results = json.loads(results_path.read_text())
    assert results and {r["category_id"] for r in results} <= {1, 3}
    assert {r["image_id"] for r in results} <= {100, 101, 102}
    expected = pycocotools_stats(root / "valid" / "_annotations.coco.json", results_path)
    ours = [math.nan if report[name] is None else report[name] for name in STAT_NAMES]
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12)
    assert f"COCO AP {expected[0]:.4f}" in printed
