import hashlib
import json
import time
from collections import Counter

import numpy as np
import pytest

from detaccel.cli import main
from detaccel.data import SYNTHETIC_CLASSES, load_coco, load_voc, read_image, resolve_coco_paths
from detaccel.data.synthetic import split_indices, synthetic_image, write_synthetic

NUM_IMAGES = 12


def _digest(root):
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    base = tmp_path_factory.mktemp("synthetic")
    voc = write_synthetic(base / "voc", "voc", seed=3, num_images=NUM_IMAGES)
    coco = write_synthetic(base / "coco", "coco", seed=3, num_images=NUM_IMAGES)
    return base, voc, coco


def test_same_seed_same_images_and_annotations():
    image, objects = synthetic_image(7, 4)
    again, objects_again = synthetic_image(7, 4)
    assert np.array_equal(image, again)
    assert objects == objects_again
    other, _ = synthetic_image(8, 4)
    assert not np.array_equal(image, other)
    assert image.shape == (240, 320, 3) and image.dtype == np.uint8


def test_writing_is_deterministic(written, tmp_path):
    base, _, _ = written
    write_synthetic(tmp_path / "voc", "voc", seed=3, num_images=NUM_IMAGES)
    assert _digest(tmp_path / "voc") == _digest(base / "voc")
    # An image depends only on the seed and its index, not on how many are written.
    write_synthetic(tmp_path / "fewer", "voc", seed=3, num_images=5)
    name = "VOCdevkit/VOC2007/JPEGImages/000004.jpg"
    assert _digest(tmp_path / "fewer")[name] == _digest(base / "voc")[name]


def test_torchvisions_voc_reader_reads_the_embedded_default_as_is(written):
    from torchvision.datasets import VOCDetection

    base, voc_root, _ = written
    assert voc_root == base / "voc" / "VOCdevkit" / "VOC2007"
    ours = load_voc(voc_root, "test", "synthetic")
    theirs = VOCDetection(str(base / "voc"), year="2007", image_set="test", download=False)
    assert len(theirs) == len(ours) > 0
    image, target = theirs[0]
    record = ours.records[0]
    assert image.size == (record.width, record.height)
    objects = target["annotation"]["object"]
    assert sorted(o["name"] for o in objects) == sorted(SYNTHETIC_CLASSES[k] for k in record.labels)
    assert all(o["name"] in SYNTHETIC_CLASSES for o in objects)


def test_a_set_written_anew_replaces_the_earlier_layout(tmp_path):
    legacy = tmp_path / "VOCdevkit" / "SYNTH" / "Annotations"
    legacy.mkdir(parents=True)
    root = write_synthetic(tmp_path, "voc", seed=1, num_images=4, overwrite=True)
    assert not legacy.parent.exists() and len(load_voc(tmp_path, "trainval", "synthetic")) > 0
    assert root.name == "VOC2007"


def test_voc_and_coco_outputs_load_to_the_same_records(written):
    _, voc_root, coco_root = written
    for split in ("train", "val", "test", "trainval"):
        voc = load_voc(voc_root, split, "synthetic", check_images=True)
        # Named, the class list keeps a category that a small split has no object of.
        coco = load_coco(*resolve_coco_paths(coco_root, split), classes="synthetic", check_images=True)
        assert voc.class_names == coco.class_names == SYNTHETIC_CLASSES
        assert len(voc) == len(coco) > 0
        for v, c in zip(voc, coco, strict=True):
            assert int(v.image_id) == c.image_id
            assert v.same_annotations(c)
            assert np.array_equal(read_image(v.file_path), read_image(c.file_path))


def test_records_match_the_generated_objects(written):
    _, voc_root, _ = written
    for record in load_voc(voc_root, "trainval", "synthetic"):
        _, objects = synthetic_image(3, int(record.image_id) - 1)
        assert record.labels.tolist() == [o.label for o in objects]
        assert record.boxes.tolist() == [list(o.box) for o in objects]
        assert record.difficult.tolist() == [o.difficult for o in objects]


def test_splits_partition_the_images():
    splits = split_indices(300, seed=0)
    assert {k: len(v) for k, v in splits.items()} == {"train": 180, "val": 30, "test": 90, "trainval": 210}
    assert sorted(splits["train"] + splits["val"] + splits["test"]) == list(range(300))
    assert splits["trainval"] == sorted(splits["train"] + splits["val"])
    assert all(len(v) >= 1 for v in split_indices(3, seed=0).values())


def test_variety():
    per_image = [synthetic_image(0, i)[1] for i in range(60)]
    objects = [o for image_objects in per_image for o in image_objects]
    counts = Counter(len(image_objects) for image_objects in per_image)
    assert set(Counter(o.label for o in objects)) == set(range(len(SYNTHETIC_CLASSES)))
    assert min(counts) >= 1 and max(counts) <= 6 and len(counts) >= 4
    widths = np.array([o.box[2] - o.box[0] + 1 for o in objects])
    heights = np.array([o.box[3] - o.box[1] + 1 for o in objects])
    assert widths.min() < 24 and widths.max() > 100
    aspect = widths / heights
    assert aspect.min() < 0.75 and aspect.max() > 1.33
    assert any(o.truncated for o in objects)
    assert any(o.visible < 0.9 and not o.truncated for o in objects)  # occluded
    for o in objects:
        assert 0 <= o.box[0] <= o.box[2] < 320 and 0 <= o.box[1] <= o.box[3] < 240
        assert o.difficult == (o.visible < 0.55 or min(o.box[2] - o.box[0], o.box[3] - o.box[1]) + 1 < 10)


def test_generation_is_fast(tmp_path):
    start = time.perf_counter()
    write_synthetic(tmp_path, "coco", seed=1, num_images=30)
    assert time.perf_counter() - start < 10  # about 0.3 s; generous for busy machines


def test_refuses_to_overwrite(written):
    base, _, _ = written
    with pytest.raises(FileExistsError, match="overwrite"):
        write_synthetic(base / "voc", "voc", seed=3, num_images=2)


def test_cli(tmp_path, capsys):
    assert (
        main(
            ["data", "synth", "--out", str(tmp_path), "--format", "coco", "--num-images", "4", "--seed", "2"]
        )
        == 0
    )
    assert "wrote 4 synthetic images" in capsys.readouterr().out
    meta = json.loads((tmp_path / "synthetic.json").read_text())
    assert meta["seed"] == 2 and meta["classes"] == list(SYNTHETIC_CLASSES)
    assert main(["data", "synth", "--out", str(tmp_path), "--format", "coco", "--num-images", "4"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (
        main(
            ["data", "synth", "--out", str(tmp_path), "--format", "coco", "--num-images", "4", "--overwrite"]
        )
        == 0
    )
    capsys.readouterr()
    args = ["data", "check", "--format", "coco", "--root", str(tmp_path), "--split", "trainval", "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == 3 and summary["skipped_problems"] == 0


def test_a_config_that_generates_the_set_says_where(tmp_path, capsys):
    from detaccel.engine.data import load_split
    from tests.detector_configs import tiny_config

    root = tmp_path / "typo" / "synth"
    config = tiny_config(root, data={"synthetic": True, "synthetic_images": 6})
    assert len(load_split(config, "trainval")) > 0
    err = capsys.readouterr().err
    assert "writing the embedded synthetic dataset (6 images)" in err and str(root.resolve()) in err
    load_split(config, "test")  # written once: no second message
    assert "writing" not in capsys.readouterr().err
