"""Detections and proposals saved in standard formats, and ``detaccel evaluate`` scoring them."""

import json

import numpy as np
import pytest

from detaccel.cli import main
from detaccel.data import DatasetError, load_voc
from detaccel.data.synthetic import write_synthetic
from detaccel.evaluation import (
    Detections,
    evaluate_detections,
    proposal_recall,
    read_coco_detections,
    read_proposals,
    read_voc_detections,
    write_coco_detections,
    write_proposals,
    write_voc_detections,
)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = write_synthetic(tmp_path_factory.mktemp("synth"), "voc", seed=5, num_images=20)
    return root, load_voc(root, "test", "synthetic")


def noisy_detections(dataset, seed=0):
    """Ground truth moved a little, some of it relabelled, plus random boxes."""
    rng = np.random.default_rng(seed)
    out = {}
    for r in dataset:
        boxes = r.boxes + rng.normal(0, 2, r.boxes.shape)
        labels = np.where(rng.random(r.num_objects) < 0.2, (r.labels + 1) % 6, r.labels)
        extra = rng.uniform(0, 200, (3, 2))
        boxes = np.concatenate([boxes, np.concatenate([extra, extra + 40], axis=1)])
        labels = np.concatenate([labels, rng.integers(0, 6, 3)])
        out[r.image_id] = Detections(boxes, rng.random(len(boxes)).round(4), labels)
    return out


def test_voc_files_round_trip(synthetic, tmp_path):
    _, dataset = synthetic
    detections = noisy_detections(dataset)
    paths = write_voc_detections(tmp_path, dataset.records, detections, dataset.class_names, "test")
    assert [p.name for p in paths] == [f"comp4_det_test_{c}.txt" for c in dataset.class_names]
    first_id = dataset[0].image_id
    lines = paths[int(detections[first_id].labels[0])].read_text().splitlines()
    line = next(x for x in lines if x.startswith(first_id))
    box = detections[first_id].boxes[0]
    assert line.split()[2:] == [f"{v + 1:.2f}" for v in box]  # the devkit's 1-based pixels
    back = read_voc_detections(tmp_path, dataset.records, dataset.class_names, "test")
    for image_id, dets in detections.items():
        order = np.lexsort((dets.scores, dets.labels))
        again = back[image_id]
        order_back = np.lexsort((again.scores, again.labels))
        np.testing.assert_allclose(again.boxes[order_back], dets.boxes[order], atol=0.006)
        np.testing.assert_array_equal(again.labels[order_back], dets.labels[order])
    before = evaluate_detections(dataset, detections)
    after = evaluate_detections(dataset, back)
    assert after["voc07"]["mAP"] == pytest.approx(before["voc07"]["mAP"], abs=1e-3)
    assert 0.2 < before["voc10"]["mAP"] < 0.95


def test_reads_voc_files_written_by_other_tools(synthetic, tmp_path):
    _, dataset = synthetic
    r = dataset[0]
    x1, y1, x2, y2 = (r.boxes[0] + 1).tolist()
    name = dataset.class_names[r.labels[0]]
    (tmp_path / f"comp3_det_test_{name}.txt").write_text(f"\n{r.image_id} 0.9 {x1} {y1} {x2} {y2}\n")
    (tmp_path / "comp3_det_val_disc.txt").write_text("whatever\n")  # another split: ignored
    detections = read_voc_detections(tmp_path, dataset.records, dataset.class_names, "test")
    np.testing.assert_allclose(detections[r.image_id].boxes, [r.boxes[0]])


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("comp4_det_test_unicorn.txt", "", "comp4_det_test_unicorn.txt: unknown class 'unicorn'"),
        (
            "comp4_det_test_disc.txt",
            "{id} 0.5 1 2 3\n",
            r"comp4_det_test_disc.txt:1: expected '<image id> <score>",
        ),
        (
            "comp4_det_test_disc.txt",
            "\nnope 0.5 1 2 3 4\n",
            r"comp4_det_test_disc.txt:2: unknown image id 'nope'",
        ),
        ("comp4_det_test_disc.txt", "{id} high 1 2 3 4\n", "must be numbers"),
        ("detections.txt", "", "not a VOC results file name"),
    ],
)
def test_bad_voc_files(synthetic, tmp_path, name, content, problem):
    _, dataset = synthetic
    (tmp_path / name).write_text(content.format(id=dataset[0].image_id))
    path = tmp_path if name.startswith("comp") else tmp_path / name
    with pytest.raises(DatasetError, match=problem):
        read_voc_detections(path, dataset.records, dataset.class_names, "test")


def test_no_voc_files_for_the_split(synthetic, tmp_path):
    _, dataset = synthetic
    (tmp_path / "comp4_det_test_disc.txt").write_text("")
    with pytest.raises(DatasetError, match="no VOC results files for split 'val'"):
        read_voc_detections(tmp_path, dataset.records, dataset.class_names, "val")


def test_coco_results_round_trip(synthetic, tmp_path):
    _, dataset = synthetic
    detections = noisy_detections(dataset, seed=1)
    path = write_coco_detections(tmp_path / "dets.json", dataset.records, detections, dataset.category_ids)
    entry = json.loads(path.read_text())[0]
    assert set(entry) == {"image_id", "category_id", "bbox", "score"}
    assert isinstance(entry["image_id"], int)
    back = read_coco_detections(path, dataset.records, dataset.category_ids)
    for image_id, dets in detections.items():
        np.testing.assert_allclose(back[image_id].boxes, dets.boxes)
        np.testing.assert_array_equal(back[image_id].labels, dets.labels)
    with pytest.raises(DatasetError, match="unknown category id"):
        read_coco_detections(path, dataset.records, [10, 20, 30, 40, 50, 60])
    path.write_text(path.read_text()[:50])
    with pytest.raises(DatasetError, match=r"dets\.json: malformed or truncated JSON"):
        read_coco_detections(path, dataset.records, dataset.category_ids)


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_proposal_files_round_trip(synthetic, tmp_path, suffix):
    _, dataset = synthetic
    rng = np.random.default_rng(2)
    proposals = {}
    for r in dataset:
        corners = rng.integers(0, 150, (30, 2))
        random_boxes = np.concatenate([corners, corners + rng.integers(5, 100, (30, 2))], axis=1)
        boxes = np.concatenate([r.boxes + rng.integers(-3, 4, r.boxes.shape), random_boxes]).astype(
            np.float32
        )
        proposals[r.image_id] = (boxes, rng.random(len(boxes)).astype(np.float32))
    path = write_proposals(tmp_path / f"proposals{suffix}", dataset.records, proposals)
    back = read_proposals(path, dataset.records)
    assert back.keys() == proposals.keys()
    for image_id, (boxes, scores) in proposals.items():
        np.testing.assert_allclose(back[image_id][0], boxes, atol=1e-4)
        np.testing.assert_allclose(back[image_id][1], scores)
    assert proposal_recall(dataset.records, back) == proposal_recall(dataset.records, proposals)


def test_evaluate_command(synthetic, tmp_path, capsys):
    root, dataset = synthetic
    detections = noisy_detections(dataset)
    write_voc_detections(tmp_path / "voc", dataset.records, detections, dataset.class_names, "test")
    write_coco_detections(tmp_path / "dets.json", dataset.records, detections, dataset.category_ids)
    proposals = {r.image_id: r.boxes for r in dataset}
    write_proposals(tmp_path / "proposals.npz", dataset.records, proposals)
    base = ["evaluate", "--root", str(root), "--split", "test", "--classes", "synthetic"]

    assert main([*base, "--detections", str(tmp_path / "voc")]) == 0
    out = capsys.readouterr().out
    assert "VOC2007 11-point AP (IoU 0.5): mAP" in out and "VOC2010+ area AP" in out

    args = [*base, "--detections", str(tmp_path / "dets.json"), "--metric", "coco", "--metric", "voc07"]
    assert main([*args, "--json", "--proposals", str(tmp_path / "proposals.npz")]) == 0
    report = json.loads(capsys.readouterr().out)
    expected = evaluate_detections(dataset, detections, ["coco", "voc07"])
    assert report["detections"]["coco"]["AP"] == pytest.approx(expected["coco"]["AP"], abs=1e-9)
    assert report["detections"]["voc07"]["mAP"] == pytest.approx(expected["voc07"]["mAP"], abs=1e-9)
    assert report["proposals"]["recall@0.50"] == 1.0
    assert report["dataset"]["images"] == len(dataset)

    assert (
        main([*base, "--proposals", str(tmp_path / "proposals.npz"), "--output", str(tmp_path / "r.json")])
        == 0
    )
    out = capsys.readouterr().out
    assert "recall vs proposals kept" in out and "AR@10 " in out and "AR@100 " in out
    assert json.loads((tmp_path / "r.json").read_text())["proposals"]["AR@10"] == 1.0
    # Capped at one box per image: AR@10 and beyond would only repeat AR at one box.
    assert main([*base, "--proposals", str(tmp_path / "proposals.npz"), "--max-proposals", "1"]) == 0
    out = capsys.readouterr().out
    assert "(at most 1 kept)" in out and "AR@10 " not in out and "AR@100 " not in out

    assert main(base) == 2
    assert "give --detections and/or --proposals" in capsys.readouterr().err
    assert main([*base, "--detections", str(tmp_path / "missing.json")]) == 2
    assert "missing.json: results file not found" in capsys.readouterr().err
