"""VOC-format datasets in labelling-tool layouts, split directories, class discovery, and error hints."""

import shutil

import numpy as np
import pytest
import yaml

from detaccel.cli import main
from detaccel.config import load_config
from detaccel.data import SYNTHETIC_CLASSES, VOC_CLASSES, DatasetError, load_voc, write_synthetic
from detaccel.data.voc import find_voc_layout, read_image_set
from detaccel.engine import load_checkpoint, save_checkpoint
from detaccel.engine.data import DataSetupError, load_split
from tests.data_builders import make_voc, voc_object_xml, voc_xml, write_test_jpeg
from tests.detector_configs import tiny_config, tiny_config_dict

ANNOTATIONS = {
    "img2": voc_xml([voc_object_xml("cat", (1, 1, 10, 20))], filename="img2.jpg"),
    "img10": voc_xml(
        [voc_object_xml("dog", (5, 6, 30, 40), difficult=1), voc_object_xml("cat", (2, 2, 9, 9))],
        filename="img10.jpg",
    ),
    "img1": voc_xml([voc_object_xml("dog", (3, 3, 64, 48))], filename="img1.jpg"),
}


def _devkit(tmp_path):
    root = make_voc(tmp_path / "devkit" / "VOCdevkit" / "VOC2007", ANNOTATIONS, split="trainval")
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("img1\nimg2\nimg10\n")
    return root


def _flat(tmp_path, devkit, annotations_dir, images_dir):
    """The devkit's files copied into ``annotations_dir`` and ``images_dir`` of a new root."""
    root = tmp_path / "flat"
    for xml in (devkit / "Annotations").iterdir():
        (root / annotations_dir).mkdir(parents=True, exist_ok=True)
        shutil.copy(xml, root / annotations_dir / xml.name)
    for image in (devkit / "JPEGImages").iterdir():
        (root / images_dir).mkdir(parents=True, exist_ok=True)
        shutil.copy(image, root / images_dir / image.name)
    return root


@pytest.mark.parametrize(
    ("annotations_dir", "images_dir"),
    [(".", "."), ("annotations", "images"), ("labels", "photos"), ("xml", ".")],
)
def test_flat_layouts_load_to_the_records_of_the_devkit_layout(tmp_path, annotations_dir, images_dir):
    devkit = _devkit(tmp_path)
    expected = load_voc(devkit, "trainval", "discover")
    root = _flat(tmp_path, devkit, annotations_dir, images_dir)
    layout = find_voc_layout(root)
    assert not layout.devkit
    assert layout.annotations.resolve() == (root / annotations_dir).resolve()
    dataset = load_voc(root, "all", "discover")
    assert dataset.root == root
    assert dataset.class_names == expected.class_names == ("cat", "dog")
    assert [r.image_id for r in dataset] == ["img1", "img2", "img10"]  # natural order of the ids
    for record, reference in zip(dataset, expected, strict=True):
        assert record.image_id == reference.image_id
        assert record.same_annotations(reference)
        assert record.file_path == str(root / images_dir / f"{record.image_id}.jpg")


def test_devkit_layout_still_wins_and_all_is_every_annotation(tmp_path):
    devkit = _devkit(tmp_path)
    assert find_voc_layout(tmp_path / "devkit").devkit
    assert read_image_set(devkit, "all") == ["img1", "img2", "img10"]
    (devkit / "ImageSets" / "Main" / "all.txt").write_text("img2\n")
    assert read_image_set(devkit, "all") == ["img2"]  # a real all.txt is read as written


def test_image_found_by_filename_first_then_by_stem(tmp_path):
    root = tmp_path / "shoot"
    root.mkdir()
    # a.xml names IMG_0001.jpg; an a.jpg exists too, but the XML's <filename> wins.
    (root / "a.xml").write_text(voc_xml([voc_object_xml("cat", (1, 1, 5, 5))], filename="IMG_0001.jpg"))
    write_test_jpeg(root / "pics" / "IMG_0001.jpg", seed=1)
    write_test_jpeg(root / "pics" / "a.jpg", seed=2)
    # b.xml names a file that is not there (renamed on export): found by its stem, any image suffix.
    (root / "b.xml").write_text(voc_xml([voc_object_xml("cat", (1, 1, 5, 5))], filename="b_jpg.rf.123.jpg"))
    write_test_jpeg(root / "pics" / "b.PNG", seed=3)
    dataset = load_voc(root, "all")
    assert [r.file_path for r in dataset] == [
        str(root / "pics" / "IMG_0001.jpg"),
        str(root / "pics" / "b.PNG"),
    ]


def test_flat_missing_image_names_the_xml_and_where_it_looked(tmp_path):
    root = tmp_path / "shoot"
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "a.xml").write_text(
        voc_xml([voc_object_xml("cat", (1, 1, 5, 5))], filename="a.jpg")
    )
    write_test_jpeg(root / "images" / "other.jpg")
    with pytest.raises(DatasetError) as info:
        load_voc(root, "all")
    assert info.value.path == str(root / "annotations" / "a.xml")
    assert "image file not found (looked for 'a.jpg' or a.<jpg|png|...> in images/)" in info.value.problem


def test_layout_errors_name_the_folders(tmp_path, capsys):
    for name in ("train", "valid"):
        (tmp_path / "export" / name).mkdir(parents=True)
        (tmp_path / "export" / name / "x.xml").write_text(voc_xml([]))
    with pytest.raises(DatasetError, match=r"several folders \(train/, valid/\); give one of them"):
        find_voc_layout(tmp_path / "export")
    (tmp_path / "empty").mkdir()
    assert main(["data", "check", "--root", str(tmp_path / "empty"), "--split", "all"]) == 2
    err = capsys.readouterr().err
    assert "not a VOC dataset (no Annotations/ directory, and no .xml annotation files" in err
    assert "--skip-bad" not in err  # skipping bad items cannot make a dataset appear


def test_missing_split_hints_at_all_and_data_split_not_skip_bad(tmp_path, capsys):
    root = _flat(tmp_path, _devkit(tmp_path), "annotations", "images")
    assert main(["data", "check", "--root", str(root), "--split", "train"]) == 2
    err = capsys.readouterr().err
    assert "image set 'train' not found (no split files)" in err
    assert "--split all" in err and "detaccel data split" in err and "--split-dir" in err
    assert "--skip-bad" not in err and "one of the splits found" not in err
    devkit = tmp_path / "devkit" / "VOCdevkit" / "VOC2007"
    assert main(["data", "check", "--root", str(devkit), "--split", "bogus"]) == 2
    err = capsys.readouterr().err
    assert "(splits found: trainval)" in err and "one of the splits found" in err and "--skip-bad" not in err


def test_split_files_read_from_a_split_directory(tmp_path, capsys):
    root = _flat(tmp_path, _devkit(tmp_path), "annotations", "images")
    splits = tmp_path / "splits"
    splits.mkdir()
    (splits / "train.txt").write_text("img10\nimg1\n")
    assert [r.image_id for r in load_voc(root, "train", split_dir=splits)] == ["img10", "img1"]
    with pytest.raises(DatasetError, match="image set 'test' not found"):
        load_voc(root, "test", split_dir=splits)
    with pytest.raises(DatasetError, match="split directory not found"):
        load_voc(root, "train", split_dir=tmp_path / "nowhere")
    assert main(["data", "check", "--root", str(root), "--split-dir", str(splits), "--split", "train"]) == 0
    assert "split train: 2 images, 3 objects" in capsys.readouterr().out


def test_auto_classes(tmp_path):
    devkit = _devkit(tmp_path)  # a VOC2007 folder whose classes are all VOC classes
    assert load_voc(devkit, "trainval").class_names == VOC_CLASSES
    cells = make_voc(
        tmp_path / "cells" / "VOCdevkit" / "VOC2007",
        {"a": voc_xml([voc_object_xml("cellbody", (1, 1, 5, 5))])},
    )
    assert load_voc(cells, "train").class_names == ("cellbody",)  # VOC2007 folder of other classes
    synthetic = write_synthetic(tmp_path / "synth", "voc", num_images=6, width=96, height=72)
    assert load_voc(synthetic, "test").class_names == SYNTHETIC_CLASSES  # its own list and order
    assert load_voc(devkit, "trainval", "voc").class_names == VOC_CLASSES


def test_discovered_classes_are_those_of_the_whole_dataset(tmp_path):
    root = make_voc(
        tmp_path,
        {
            "a": voc_xml([voc_object_xml("zebra", (1, 1, 5, 5))]),
            "b": voc_xml([voc_object_xml("ant", (1, 1, 5, 5))]),
            "c": voc_xml([voc_object_xml("moth", (1, 1, 5, 5))]),
        },
    )
    main_dir = root / "ImageSets" / "Main"
    (main_dir / "train.txt").write_text("a\n")
    (main_dir / "test.txt").write_text("b\nc\n")
    train, test = load_voc(root, "train"), load_voc(root, "test", "discover")
    assert train.class_names == test.class_names == ("ant", "moth", "zebra")
    assert train[0].labels.tolist() == [2]


def test_unknown_class_hint_names_the_class_options(tmp_path, capsys):
    root = make_voc(tmp_path, {"a": voc_xml([voc_object_xml("cellbody", (1, 1, 5, 5))])})
    assert main(["data", "check", "--root", str(root), "--split", "train", "--classes", "voc"]) == 2
    err = capsys.readouterr().err
    assert "unknown class 'cellbody'" in err
    assert "--classes discover" in err and "--skip-bad" not in err
    assert main(["data", "check", "--root", str(root), "--split", "train"]) == 0  # auto: discovered
    out = capsys.readouterr().out
    assert "1 class (discovered in the annotation files)" in out and "cellbody" in out


def test_config_root_relative_to_the_config_file(tmp_path, monkeypatch):
    dataset = make_voc(tmp_path / "data" / "set", {"a": voc_xml([voc_object_xml("cat", (1, 1, 5, 5))])})
    (tmp_path / "configs").mkdir()
    path = tmp_path / "configs" / "c.yaml"
    mapping = tiny_config_dict(
        dataset, data={"root": "../data/set", "classes": "auto", "train_split": "train"}
    )
    path.write_text(yaml.safe_dump(mapping))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(path)
    assert (elsewhere / config.data.root).resolve() == dataset.resolve()
    assert load_split(config, "train").class_names == ("cat",)
    monkeypatch.chdir(tmp_path / "data")  # "../data/set" exists from here too: the current directory wins
    assert load_config(path).data.root == "../data/set"

    mapping["data"]["root"] = "../data/missing"
    path.write_text(yaml.safe_dump(mapping))
    monkeypatch.chdir(elsewhere)
    with pytest.raises(DataSetupError) as info:
        load_split(load_config(path), "train")
    message = str(info.value)
    assert "../data/missing: dataset directory not found" in message
    assert f"current directory, {elsewhere}" in message and "configuration file's directory" in message


def test_training_data_warns_when_train_and_test_share_images(tmp_path, capsys):
    annotations = {i: voc_xml([voc_object_xml("cat", (1, 1, 5, 5))]) for i in ("a", "b", "c")}
    root = make_voc(tmp_path / "set", annotations, split="trainval")
    (root / "ImageSets" / "Main" / "test.txt").write_text("c\nb\n")
    config = tiny_config(root, data={"classes": "auto"})
    load_split(config, "trainval")
    err = capsys.readouterr().err
    assert "train split 'trainval' and test split 'test' share 2 images" in err
    assert "2 of 3 training, 2 of 2 test images: c, b" in err
    load_split(config, "test")  # loading the test split alone does not warn
    assert "share" not in capsys.readouterr().err
    make_voc(root, {"d": voc_xml([voc_object_xml("cat", (1, 1, 5, 5))])}, split="test")
    load_split(config, "trainval")
    assert "share" not in capsys.readouterr().err


def test_checkpoint_records_the_classes_the_data_chose(tmp_path):
    config = tiny_config_dict(tmp_path, data={"classes": "auto"})
    path = save_checkpoint(
        tmp_path / "m.pth", {"config": config, "class_names": ["ant", "zebra"], "model": {}}
    )
    saved = load_checkpoint(path)
    assert saved["config"]["data"]["classes"] == ["ant", "zebra"] == saved["class_names"]
    assert config["data"]["classes"] == "auto"  # the caller's mapping is left alone
    explicit = tiny_config_dict(tmp_path, data={"classes": "synthetic"})
    path = save_checkpoint(
        tmp_path / "s.pth", {"config": explicit, "class_names": list(SYNTHETIC_CLASSES), "model": {}}
    )
    assert load_checkpoint(path)["config"]["data"]["classes"] == "synthetic"
    assert np.array_equal(np.array(load_checkpoint(path)["class_names"]), np.array(SYNTHETIC_CLASSES))
