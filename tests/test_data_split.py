"""`detaccel data split`: reproducible stratified splits; split overlap checks."""

import json
import stat

import pytest

from detaccel.cli import main
from detaccel.data.splits import (
    part_sizes,
    split_overlaps,
    stratified_split,
    train_test_overlap,
    union_parts,
    union_problems,
)
from detaccel.data.voc import read_image_set
from tests.data_builders import make_voc, voc_object_xml, voc_xml


def _labels(count_per_class):
    """One image per entry: image i of class c holds class c (and every 4th also class 0)."""
    images = []
    for c, count in enumerate(count_per_class):
        images += [{c, 0} if i % 4 == 3 else {c} for i in range(count)]
    return images


def test_part_sizes_add_up_and_follow_the_ratios():
    assert part_sizes(200, [0.7, 0.15, 0.15]) == [140, 30, 30]
    assert part_sizes(10, [0.7, 0.15, 0.15]) == [7, 2, 1]
    assert part_sizes(3, [0.98, 0.01, 0.01]) == [1, 1, 1]  # every part gets an image where it can
    assert sum(part_sizes(37, [0.5, 0.3, 0.2])) == 37


def test_split_is_deterministic_for_a_seed_and_covers_every_image_once():
    images = _labels([40, 25, 9, 3, 2])
    first = stratified_split(images, [0.7, 0.15, 0.15], seed=0)
    assert first == stratified_split(images, [0.7, 0.15, 0.15], seed=0)
    assert first != stratified_split(images, [0.7, 0.15, 0.15], seed=1)
    assert len(first) == len(images) and set(first) == {0, 1, 2}
    assert [first.count(p) for p in range(3)] == part_sizes(len(images), [0.7, 0.15, 0.15])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_split_stratifies(seed):
    counts = [60, 30, 12, 3]
    images = _labels(counts)
    parts = stratified_split(images, [0.7, 0.15, 0.15], seed=seed)
    for c, count in enumerate(counts):
        per_part = [
            sum(1 for image, p in zip(images, parts, strict=True) if c in image and p == q) for q in range(3)
        ]
        assert min(per_part) >= 1, (c, per_part)  # every class in every part (each has >= 3 images)
        if c > 0:  # class 0 is also in every 4th image of the others
            for share, got in zip([0.7, 0.15, 0.15], per_part, strict=True):
                assert abs(got - share * count) <= 1.5, (c, per_part)


def test_union_names_and_overlaps():
    names = ["train", "val", "trainval", "test"]
    assert union_parts("trainval", names) == ("train", "val")
    assert union_parts("train", names) is None and union_parts("test", names) is None
    splits = {"train": ["a", "b"], "val": ["c"], "trainval": ["a", "b", "c"], "test": ["c", "d"]}
    found = split_overlaps(splits)
    assert [(o.first, o.second, o.shared) for o in found] == [("val", "test", 1), ("trainval", "test", 1)]
    assert "share 1 image (c)" in str(found[0])
    assert union_problems(splits) == []
    assert union_problems({**splits, "trainval": ["c", "x"]}) == [
        "split 'trainval' is not 'train' + 'val': it lacks 2 of their 3 images "
        "and has 1 image in none of them"
    ]
    assert train_test_overlap("train", ["a"], "test", ["b"]) is None
    assert "the same split" in train_test_overlap("test", ["a"], "test", ["a"])


def _dataset(tmp_path, count=20):
    """A flat folder (no split files) of ``count`` images: every 5th holds a rare 'owl'."""
    annotations = {}
    for i in range(count):
        objects = [voc_object_xml("cat", (1, 1, 10, 10))]
        if i % 5 == 0:
            objects.append(voc_object_xml("owl", (20, 20, 30, 30)))
        annotations[f"p{i}"] = voc_xml(objects, filename=f"p{i}.jpg")
    root = make_voc(tmp_path / "photos", annotations)
    for name in ("Annotations", "JPEGImages"):  # as a labelling tool writes it: xml and images side by side
        for path in (root / name).iterdir():
            path.rename(root / path.name)
        (root / name).rmdir()
    for path in (root / "ImageSets" / "Main").iterdir():
        path.unlink()
    (root / "ImageSets" / "Main").rmdir()
    (root / "ImageSets").rmdir()
    return root


def test_cli_split_writes_disjoint_stratified_split_files(tmp_path, capsys):
    root, out = _dataset(tmp_path), tmp_path / "splits"
    args = ["data", "split", "--root", str(root), "--split-dir", str(out), "--seed", "3"]
    assert main([*args, "--out-split-names", "train,val,test", "--ratios", "0.6,0.2,0.2"]) == 0
    printed = capsys.readouterr().out
    assert "split 20 images of" in printed and "into train 12, val 4, test 4" in printed
    assert "owl" in printed and "cat" in printed
    assert "wrote train.txt, val.txt, test.txt, trainval.txt (train + val)" in printed
    assert f"--split-dir {out}" in printed
    ids = {name: read_image_set(root, name, out) for name in ("train", "val", "test", "trainval")}
    assert sorted(ids["train"] + ids["val"] + ids["test"]) == sorted(f"p{i}" for i in range(20))
    assert sorted(ids["trainval"]) == sorted(ids["train"] + ids["val"])
    owls = {f"p{i}" for i in range(0, 20, 5)}
    assert all(owls & set(ids[name]) for name in ("train", "val", "test"))  # 4 owls: one at least in each
    first = {name: (out / f"{name}.txt").read_text() for name in ids}

    assert main([*args, "--ratios", "0.6,0.2,0.2"]) == 2  # files exist
    assert "already exists (pass --overwrite to replace it)" in capsys.readouterr().err
    assert main([*args, "--ratios", "0.6,0.2,0.2", "--overwrite", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["splits"]["val"]["images"] == 4
    assert report["splits"]["all"]["objects_per_class"] == {"cat": 20, "owl": 4}
    assert {name: (out / f"{name}.txt").read_text() for name in ids} == first  # same seed, same split

    assert main(["data", "check", "--root", str(root), "--split-dir", str(out), "--split", "test"]) == 0
    captured = capsys.readouterr()
    assert "warning" not in captured.err
    assert "split files: test (4), train (12), trainval (16), val (4)" in captured.out


def test_cli_split_into_the_dataset_and_refuses_a_read_only_one(tmp_path, capsys):
    root = _dataset(tmp_path)
    assert (
        main(["data", "split", "--root", str(root), "--out-split-names", "train,test", "--ratios", "0.5,0.5"])
        == 0
    )
    assert read_image_set(root, "train") and read_image_set(root, "test")
    assert not (root / "ImageSets" / "Main" / "trainval.txt").exists()
    capsys.readouterr()
    locked = _dataset(tmp_path / "locked")
    mode = locked.stat().st_mode
    locked.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        assert main(["data", "split", "--root", str(locked)]) == 2
    finally:
        locked.chmod(mode)
    err = capsys.readouterr().err
    assert "the dataset is read-only (pass --split-dir DIR" in err
    assert not (locked / "ImageSets").exists()


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        (["--ratios", "0.5,0.5"], "2 ratios for 3 split names"),
        (["--ratios", "0.5,0.3,0.3"], "must add up to 1, got 1.1"),
        (["--ratios", "0.8,0.2,0"], "every ratio must be positive"),
        (["--out-split-names", "train,train,test"], "repeats a name"),
        (["--out-split-names", "all,val,test"], "'all' names every image"),
        (["--split", "train"], "image set 'train' not found"),
    ],
)
def test_cli_split_bad_requests(tmp_path, capsys, options, problem):
    root = _dataset(tmp_path, count=6)
    assert main(["data", "split", "--root", str(root), "--split-dir", str(tmp_path / "s"), *options]) == 2
    assert problem in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_cli_check_warns_about_overlapping_splits(tmp_path, capsys):
    annotations = {f"{i:06d}": voc_xml([voc_object_xml("cellbody", (1, 1, 5, 5))]) for i in range(6)}
    root = make_voc(tmp_path / "VOCdevkit" / "VOC2007", annotations, split="train")
    main_dir = root / "ImageSets" / "Main"
    (main_dir / "train.txt").write_text("000000\n000001\n000002\n000003\n")
    (main_dir / "val.txt").write_text("000004\n")
    (main_dir / "trainval.txt").write_text("000004\n")  # not train + val
    (main_dir / "test.txt").write_text("000002\n000003\n000004\n000005\n")
    (main_dir / "cellbody_test.txt").write_text("000002  1\n")  # a per-class list: not a split
    assert main(["data", "check", "--root", str(tmp_path), "--split", "trainval", "--no-decode"]) == 0
    captured = capsys.readouterr()
    assert (
        "warning: splits 'train' (4 images) and 'test' (4 images) share 2 images (000002, 000003); "
        "they should be disjoint"
    ) in captured.err
    assert "splits 'val' (1 image) and 'test' (4 images) share 1 image" in captured.err
    assert "split 'trainval' is not 'train' + 'val': it lacks 4 of their 5 images" in captured.err
    assert "split files: test (4), train (4), trainval (1), val (1)" in captured.out
    assert main(["data", "check", "--root", str(tmp_path), "--split", "test", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert {"splits": ["train", "test"], "shared": 2, "sizes": [4, 4]} in summary["split_overlaps"]
    assert summary["class_names"] == ["cellbody"]
