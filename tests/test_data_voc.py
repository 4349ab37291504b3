import numpy as np
import pytest

from detaccel.data import VOC_CLASSES, DatasetError, load_voc, resolve_voc_root
from detaccel.data.voc import parse_voc_annotation, write_voc_annotation
from tests.data_builders import make_voc, voc_object_xml, voc_xml


def test_reads_the_devkit_layout_with_zero_based_inclusive_boxes(tmp_path):
    root = make_voc(
        tmp_path / "VOCdevkit" / "VOC2007",
        {
            "000005": voc_xml(
                [voc_object_xml("dog", (1, 1, 10, 20)), voc_object_xml("person", (5, 6, 64, 48), 1)]
            ),
            "000007": voc_xml([voc_object_xml("tvmonitor", (20, 10, 30, 40))]),
        },
        split="test",
    )
    dataset = load_voc(tmp_path, "test")  # found through VOCdevkit/
    assert dataset.root == root
    assert dataset.class_names == VOC_CLASSES
    assert dataset.category_ids == tuple(range(1, 21))
    assert [r.image_id for r in dataset] == ["000005", "000007"]
    first = dataset[0]
    assert first.file_path == str(root / "JPEGImages" / "000005.jpg")
    assert (first.width, first.height) == (64, 48)
    assert first.boxes.dtype == np.float32
    np.testing.assert_array_equal(first.boxes, [[0, 0, 9, 19], [4, 5, 63, 47]])
    assert first.labels.tolist() == [VOC_CLASSES.index("dog"), VOC_CLASSES.index("person")]
    assert first.difficult.tolist() == [False, True]
    assert first.crowd.tolist() == [False, False]
    assert not first.boxes.flags.writeable


def test_reads_quirky_real_world_xml(tmp_path):
    quirky = """<?xml version="1.0" encoding="utf-8"?>
<annotation verified="yes">
  <folder></folder>
  <filename>000001_jpg.rf.0123abc.jpg</filename>
  <path>somewhere/else.jpg</path>
  <source><database>elsewhere</database></source>
  <size><depth>3</depth><height> 48 </height><width>64</width></size>
  <segmented>0</segmented>
  <object>
    <bndbox><xmin>12.5</xmin><xmax>30.25</xmax><ymin>
      3</ymin><ymax>20.0</ymax></bndbox>
    <occluded>1</occluded>
    <name> cellbody </name>
    <truncated>0</truncated>
  </object>
  <object>
    <name>cellbody</name>
    <difficult>1</difficult>
    <part><name>head</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></part>
    <bndbox><xmax>64</xmax><ymax>48</ymax><xmin>40</xmin><ymin>30</ymin></bndbox>
    <attributes><attribute><name>stain</name><value>blue</value></attribute></attributes>
  </object>
</annotation>
"""
    make_voc(tmp_path, {"000001": quirky})
    dataset = load_voc(tmp_path, "train", ["cellbody"])
    record = dataset[0]
    np.testing.assert_allclose(record.boxes, [[11.5, 2, 29.25, 19], [39, 29, 63, 47]])
    assert record.difficult.tolist() == [False, True]
    assert record.file_path.endswith("JPEGImages/000001.jpg")


def test_missing_size_is_read_from_the_image(tmp_path):
    xml = "<annotation>" + voc_object_xml("dog", (2, 2, 5, 5)) + "</annotation>"
    make_voc(tmp_path, {"a": xml})
    record = load_voc(tmp_path, "train")[0]
    assert (record.width, record.height) == (64, 48)


def test_image_found_through_the_xml_filename(tmp_path):
    make_voc(tmp_path, {"a": voc_xml([voc_object_xml("dog", (2, 2, 5, 5))], filename="photo.jpg")})
    (tmp_path / "JPEGImages" / "a.jpg").rename(tmp_path / "JPEGImages" / "photo.jpg")
    assert load_voc(tmp_path, "train")[0].file_path.endswith("photo.jpg")


def test_boxes_one_pixel_outside_are_clipped(tmp_path):
    # Tools that write 0-based pixels produce xmin = 0 and xmax = width + 1 at the borders.
    make_voc(tmp_path, {"a": voc_xml([voc_object_xml("dog", (0, 0, 65, 49))])})
    np.testing.assert_array_equal(load_voc(tmp_path, "train")[0].boxes, [[0, 0, 63, 47]])


def test_class_lists(tmp_path):
    make_voc(
        tmp_path,
        {
            "a": voc_xml([voc_object_xml("zebra", (1, 1, 5, 5)), voc_object_xml("ant", (1, 1, 5, 5))]),
            "b": voc_xml([voc_object_xml("moth", (1, 1, 5, 5))]),
        },
    )
    discovered = load_voc(tmp_path, "train", "discover")
    assert discovered.class_names == ("ant", "moth", "zebra")
    assert discovered[0].labels.tolist() == [2, 0]
    custom = load_voc(tmp_path, "train", "zebra,moth,ant")
    assert custom.class_names == ("zebra", "moth", "ant")
    assert custom[1].labels.tolist() == [1]
    assert load_voc(tmp_path, "train", ["ant", "moth", "zebra", "unused"]).category_ids == (1, 2, 3, 4)


def test_image_set_lines_take_the_first_column(tmp_path):
    make_voc(tmp_path, {"a": voc_xml([voc_object_xml("dog", (1, 1, 5, 5))])})
    (tmp_path / "ImageSets" / "Main" / "dog_train.txt").write_text("a  1\n")
    (tmp_path / "ImageSets" / "Main" / "train.txt").write_text("\n a  1 \n\n")
    assert [r.image_id for r in load_voc(tmp_path, "train")] == ["a"]


def test_unknown_split_lists_the_available_ones(tmp_path):
    make_voc(tmp_path, {"a": voc_xml([voc_object_xml("dog", (1, 1, 5, 5))])})
    with pytest.raises(DatasetError, match=r"test\.txt: image set 'test' not found \(splits found: train\)"):
        load_voc(tmp_path, "test")


def test_resolve_root_needs_exactly_one_dataset(tmp_path):
    for name in ("VOC2007", "VOC2012"):
        make_voc(tmp_path / "VOCdevkit" / name, {"a": voc_xml([])})
    assert resolve_voc_root(tmp_path / "VOCdevkit" / "VOC2012").name == "VOC2012"
    with pytest.raises(DatasetError, match="several VOC datasets"):
        resolve_voc_root(tmp_path)
    with pytest.raises(DatasetError, match="not a VOC dataset"):
        resolve_voc_root(tmp_path / "VOCdevkit" / "VOC2007" / "JPEGImages")


def test_written_annotations_read_back(tmp_path):
    path = tmp_path / "a.xml"
    objects = [("dog", (0, 0, 9.5, 19), False, True), ("cat&co", (3, 4, 5, 6), True, False)]
    write_voc_annotation(path, filename="a.jpg", width=64, height=48, objects=objects)
    annotation = parse_voc_annotation(path)
    assert (annotation.width, annotation.height, annotation.filename) == (64, 48, "a.jpg")
    assert [o.name for o in annotation.objects] == ["dog", "cat&co"]
    assert annotation.objects[0].bndbox == (1, 1, 10.5, 20)
    assert [o.difficult for o in annotation.objects] == [False, True]
    assert [o.truncated for o in annotation.objects] == [True, False]
