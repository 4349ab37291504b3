"""Every kind of bad input gives an error naming the file and the problem; --skip-bad warns and counts."""

import json
import re
import warnings

import numpy as np
import pytest

from detaccel.cli import main
from detaccel.data import BadInputWarning, DatasetError, load_coco, load_voc, read_image
from tests.data_builders import make_coco, make_voc, voc_object_xml, voc_xml, write_test_jpeg

GOOD = voc_xml([voc_object_xml("dog", (2, 2, 20, 20))])


def _voc_with(tmp_path, bad_id, bad_xml, **kwargs):
    return make_voc(tmp_path, {"good": GOOD, bad_id: bad_xml}, **kwargs)


def _expect_error(root, path_part, problem, **kwargs):
    kwargs.setdefault("classes", "voc")  # the objects below are of VOC classes, 'unicorn' is not
    with pytest.raises(DatasetError) as info:
        load_voc(root, "train", **kwargs)
    message = str(info.value)
    assert path_part in info.value.path, message
    assert re.search(problem, message), message
    return info.value


def _expect_skipped(root, count, problem, **kwargs):
    kwargs.setdefault("classes", "voc")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = load_voc(root, "train", skip_bad=True, **kwargs)
    bad = [w for w in caught if issubclass(w.category, BadInputWarning)]
    assert len(bad) == count == len(dataset.issues)
    assert all(re.search(problem, str(w.message)) for w in bad)
    assert dataset.summary()["skipped_problems"] == count
    return dataset


def test_missing_image(tmp_path):
    root = _voc_with(tmp_path, "lost", GOOD)
    (root / "JPEGImages" / "lost.jpg").unlink()
    _expect_error(root, "JPEGImages/lost.jpg", "image file not found")
    dataset = _expect_skipped(root, 1, r"lost\.jpg: image file not found \(image skipped\)")
    assert [r.image_id for r in dataset] == ["good"]


def test_missing_annotation_file(tmp_path):
    root = _voc_with(tmp_path, "noxml", None)
    _expect_error(root, "Annotations/noxml.xml", "annotation file not found")


def test_corrupt_jpeg(tmp_path):
    root = _voc_with(tmp_path, "broken", GOOD)
    path = root / "JPEGImages" / "broken.jpg"
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(DatasetError, match=r"broken\.jpg: truncated JPEG"):
        read_image(path)
    _expect_error(root, "broken.jpg", "truncated JPEG", check_images=True)
    dataset = _expect_skipped(root, 1, "truncated JPEG", check_images=True)
    assert len(dataset) == 1


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "image file is empty"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "truncated JPEG"),
        (b"not an image at all", "cannot decode image"),
    ],
)
def test_undecodable_images(tmp_path, content, problem):
    path = tmp_path / "x.jpg"
    path.write_bytes(content)
    with pytest.raises(DatasetError, match=rf"x\.jpg: {problem}"):
        read_image(path)


def test_size_disagreeing_with_the_annotation(tmp_path):
    root = _voc_with(tmp_path, "big", GOOD)
    write_test_jpeg(root / "JPEGImages" / "big.jpg", 100, 80)
    _expect_error(root, "big.jpg", r"image is 100x80 but big\.xml says 64x48", check_images=True)


@pytest.mark.parametrize(
    ("xml", "problem"),
    [
        ("<annotation><object><name>dog</name>", "malformed XML"),  # truncated
        ("<annotation><size><width>64</width></annotation>", "malformed XML"),  # mismatched tag
        ("", "malformed XML"),
        ("<html></html>", "not a VOC annotation"),
        ("<annotation><size><width>sixty</width></size></annotation>", "bad <size>"),
    ],
)
def test_malformed_xml(tmp_path, xml, problem):
    root = _voc_with(tmp_path, "bad", xml)
    _expect_error(root, "Annotations/bad.xml", problem)
    dataset = _expect_skipped(root, 1, problem)
    assert [r.image_id for r in dataset] == ["good"]


@pytest.mark.parametrize(
    ("obj", "problem"),
    [
        (voc_object_xml("unicorn", (2, 2, 9, 9)), r"object 0 \('unicorn'\) has unknown class 'unicorn'"),
        (voc_object_xml("dog", (30, 2, 10, 9)), r"object 0 \('dog'\) has an inverted box, xmax < xmin"),
        (voc_object_xml("dog", (2, 30, 10, 9)), "inverted box, ymax < ymin"),
        (voc_object_xml("dog", (2, 2, 90, 9)), r"box outside the 64x48 image: \(xmin, ymin, xmax, ymax\)"),
        (voc_object_xml("dog", (-5, 2, 9, 9)), "box outside the 64x48 image"),
        (voc_object_xml("dog", (2, 2, "ten", 9)), "non-numeric <xmax> 'ten'"),
        (voc_object_xml("dog", (2, 2, "nan", 9)), "non-finite <xmax>"),
        (voc_object_xml("dog", (2, 2, 9, 9), difficult="maybe"), "flag that is not 0/1"),
        ("<object><name>dog</name></object>", "has no <bndbox>"),
        ("<object><bndbox><xmin>1</xmin></bndbox></object>", "has no <name>"),
        (
            "<object><name>dog</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>3</xmax></bndbox></object>",
            "has no <ymax>",
        ),
    ],
)
def test_bad_objects(tmp_path, obj, problem):
    root = _voc_with(tmp_path, "bad", voc_xml([voc_object_xml("dog", (1, 1, 5, 5)), obj]))
    _expect_error(root, "Annotations/bad.xml", problem.replace("object 0", "object 1"))
    dataset = _expect_skipped(root, 1, problem.replace("object 0", "object 1") + r".*\(object skipped\)")
    bad = next(r for r in dataset if r.image_id == "bad")
    assert bad.num_objects == 1  # the good object of that image is kept


def test_image_with_no_objects(tmp_path):
    root = _voc_with(tmp_path, "empty", voc_xml([]))
    _expect_error(root, "Annotations/empty.xml", "annotation has no objects")
    assert [r.image_id for r in _expect_skipped(root, 1, "no objects")] == ["good"]
    dataset = load_voc(root, "train", allow_empty=True)
    assert [r.num_objects for r in dataset] == [1, 0]
    assert dataset.summary()["images_without_objects"] == 1


def test_duplicate_image_in_split(tmp_path):
    root = _voc_with(tmp_path, "twice", GOOD)
    (root / "ImageSets" / "Main" / "train.txt").write_text("good\ntwice\ntwice\n")
    _expect_error(root, "train.txt", "lists image 'twice' more than once")
    assert len(_expect_skipped(root, 1, "more than once")) == 2


def test_all_problems_are_counted(tmp_path):
    root = make_voc(
        tmp_path,
        {
            "good": GOOD,
            "a": voc_xml([voc_object_xml("unicorn", (1, 1, 5, 5)), voc_object_xml("dog", (9, 1, 5, 5))]),
            "b": "<annotation>",
            "c": voc_xml([]),
        },
    )
    dataset = _expect_skipped(root, 4, ".")
    assert [issue.skipped for issue in dataset.issues] == ["image", "image", "object", "object"]
    assert [r.image_id for r in dataset] == ["good", "a"]


# --- COCO ---

CATEGORIES = [{"id": 1, "name": "dog"}]


def _coco(tmp_path, annotations, images=None, **kwargs):
    images = images or [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}]
    return make_coco(tmp_path, images, annotations, CATEGORIES, **kwargs)


def _ann(**changes):
    return {
        "id": 7,
        "image_id": 1,
        "category_id": 1,
        "bbox": [2, 2, 10, 10],
        "area": 100,
        "iscrowd": 0,
        **changes,
    }


def test_coco_truncated_json_fails_even_when_skipping(tmp_path):
    path = _coco(tmp_path, [_ann()])
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    for skip_bad in (False, True):
        with pytest.raises(DatasetError, match=r"instances_val\.json: malformed or truncated JSON at line 1"):
            load_coco(path, tmp_path / "images", skip_bad=skip_bad)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ([], "top level is not an object"),
        ({"images": []}, "no 'categories' list"),
        ({"images": [], "categories": [{"id": "x"}]}, "category 0 needs an integer 'id'"),
    ],
)
def test_coco_malformed_structure(tmp_path, data, problem):
    path = tmp_path / "instances_val.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=rf"instances_val\.json: .*{re.escape(problem)}"):
        load_coco(path, tmp_path)


@pytest.mark.parametrize(
    ("annotation", "problem"),
    [
        (_ann(category_id=5), "annotation 7 has unknown category id 5"),
        (_ann(image_id=99), "annotation 7 refers to unknown image id 99"),
        (_ann(bbox=[10, 2, -3, 10]), r"annotation 7 \(image a\.jpg\) has a box of negative width"),
        (_ann(bbox=[10, 2, 3, 0]), r"zero-area box \(height 0\)"),
        (_ann(bbox=[60, 2, 30, 10]), r"box outside the 64x48 image: bbox \[60, 2, 30, 10\]"),
        (_ann(bbox=[1, 2, 3]), "bad 'bbox'"),
    ],
)
def test_coco_bad_annotations(tmp_path, annotation, problem):
    path = _coco(tmp_path, [_ann(id=1), annotation])
    with pytest.raises(DatasetError, match=rf"instances_val\.json: .*{problem}"):
        load_coco(path, tmp_path / "images")
    with pytest.warns(BadInputWarning, match=problem):
        dataset = load_coco(path, tmp_path / "images", skip_bad=True)
    assert len(dataset.issues) == 1
    assert dataset[0].num_objects == 1
    assert [a["id"] for a in dataset.coco_annotations["annotations"]] == [1]


def test_coco_missing_and_corrupt_images(tmp_path):
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 64, "height": 48} for i in (1, 2, 3)]
    path = _coco(tmp_path, [_ann(image_id=2)], images=images)
    (tmp_path / "images" / "1.jpg").unlink()
    with pytest.raises(DatasetError, match=r"images/1\.jpg: image file not found"):
        load_coco(path, tmp_path / "images")
    broken = tmp_path / "images" / "3.jpg"
    broken.write_bytes(broken.read_bytes()[:300])
    with pytest.warns(BadInputWarning):
        dataset = load_coco(path, tmp_path / "images", skip_bad=True, check_images=True)
    assert [issue.problem.split(" (")[0] for issue in dataset.issues] == [
        "image file not found",
        "truncated JPEG",
    ]
    assert [r.image_id for r in dataset] == [2]
    assert [im["id"] for im in dataset.coco_annotations["images"]] == [2]


def test_coco_bad_image_entry(tmp_path):
    images = [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}, {"id": 2, "file_name": "b.jpg"}]
    path = _coco(tmp_path, [], images=images, write_images=False)
    write_test_jpeg(tmp_path / "images" / "a.jpg")
    with pytest.raises(DatasetError, match="image entry 1 has no positive integer 'width'"):
        load_coco(path, tmp_path / "images")


# --- command line ---


def test_cli_reports_the_file_and_problem_and_suggests_skip_bad(tmp_path, capsys):
    root = _voc_with(tmp_path, "bad", voc_xml([voc_object_xml("unicorn", (2, 2, 9, 9))]))
    assert main(["data", "check", "--root", str(root), "--split", "train", "--classes", "dog"]) == 2
    err = capsys.readouterr().err
    assert "detaccel: error:" in err
    assert "Annotations/bad.xml: object 0 ('unicorn') has unknown class 'unicorn'" in err
    assert "--skip-bad" in err


def test_cli_skip_bad_warns_and_counts(tmp_path, capsys):
    root = _voc_with(tmp_path, "bad", voc_xml([voc_object_xml("unicorn", (2, 2, 9, 9))]))
    (root / "JPEGImages" / "good.jpg").write_bytes(b"\xff\xd8\xff")
    args = ["data", "check", "--root", str(root), "--split", "train", "--classes", "dog", "--skip-bad"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "detaccel: warning:" in captured.err
    assert "good.jpg: truncated JPEG" in captured.err
    assert "unknown class 'unicorn' (known: dog) (object skipped)" in captured.err
    assert "skipped 2 bad items (1 image, 1 object)" in captured.out
    assert main([*args, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["skipped_problems"] == 2
    assert summary["images"] == 1
    assert np.isclose(summary["objects"], 0)
