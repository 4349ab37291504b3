"""VOC AP on hand-built cases with known answers, and against a line-by-line port of the devkit loop."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detaccel.data import ImageRecord
from detaccel.evaluation import Detections, evaluate_voc, voc_ap
from detaccel.evaluation.voc_eval import VOC07_RECALL_THRESHOLDS, class_precision_recall

CLASSES = ("cat", "dog", "bird")


def record(image_id, boxes, labels, difficult=None):
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    difficult = [False] * len(boxes) if difficult is None else difficult
    return ImageRecord(image_id, f"{image_id}.jpg", 100, 100, boxes, labels, difficult, [False] * len(boxes))


def dets(boxes, scores, labels):
    return Detections(np.asarray(boxes, float).reshape(-1, 4), scores, labels)


def both(records, detections, classes=CLASSES):
    return (
        evaluate_voc(records, detections, classes, use_07_metric=True),
        evaluate_voc(records, detections, classes, use_07_metric=False),
    )


def test_perfect_detections_score_one():
    records = [record("a", [[0, 0, 9, 9], [20, 20, 40, 50]], [0, 1]), record("b", [[5, 5, 5, 5]], [0])]
    detections = {r.image_id: dets(r.boxes, np.ones(r.num_objects), r.labels) for r in records}
    for result in both(records, detections):
        assert result["AP"]["cat"] == 1.0 and result["AP"]["dog"] == 1.0
        assert math.isnan(result["AP"]["bird"])  # no ground truth
        assert result["mAP"] == 1.0


def test_duplicate_is_a_false_positive():
    records = [record("a", [[0, 0, 9, 9], [50, 50, 59, 59]], [0, 0])]
    detections = {"a": dets([[0, 0, 9, 9], [0, 0, 9, 8], [50, 50, 59, 59]], [0.9, 0.8, 0.7], [0, 0, 0])}
    # TP, FP (duplicate), TP: recall .5 .5 1, precision 1 .5 2/3.
    recall, precision, positives = class_precision_recall(records, detections, 0)
    np.testing.assert_allclose(recall, [0.5, 0.5, 1.0])
    np.testing.assert_allclose(precision, [1.0, 0.5, 2 / 3])
    assert positives == 2
    voc07, voc10 = both(records, detections)
    assert voc10["AP"]["cat"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert voc07["AP"]["cat"] == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)
    assert voc10["num_detections"]["cat"] == 3 and voc10["recall"]["cat"] == 1.0


def test_difficult_objects_are_neither_positives_nor_false_positives():
    records = [record("a", [[0, 0, 9, 9], [50, 50, 59, 59]], [0, 0], difficult=[True, False])]
    detections = {"a": dets([[0, 0, 9, 9], [0, 0, 9, 9], [50, 50, 59, 59]], [0.9, 0.85, 0.8], [0, 0, 0])}
    for result in both(records, detections):
        assert result["num_positives"]["cat"] == 1
        assert result["AP"]["cat"] == 1.0  # both hits on the difficult object are ignored
    recall, precision, _ = class_precision_recall(records, detections, 0)
    np.testing.assert_allclose(recall, [0, 0, 1])
    np.testing.assert_allclose(precision[-1], 1.0)


def test_only_difficult_ground_truth_means_no_ap():
    records = [record("a", [[0, 0, 9, 9]], [2], difficult=[True]), record("b", [[0, 0, 9, 9]], [0])]
    detections = {"b": dets([[0, 0, 9, 9]], [1.0], [0])}
    for result in both(records, detections):
        assert math.isnan(result["AP"]["bird"]) and result["num_positives"]["bird"] == 0
        assert result["mAP"] == 1.0  # cat only; dog and bird have no positives


def test_no_detections_score_zero():
    records = [record("a", [[0, 0, 9, 9]], [0]), record("b", [[3, 3, 30, 30]], [1])]
    for result in both(records, {}):
        assert result["AP"]["cat"] == 0.0 and result["AP"]["dog"] == 0.0
        assert result["mAP"] == 0.0
        assert result["num_detections"] == {"cat": 0, "dog": 0, "bird": 0}


def test_class_without_ground_truth_does_not_affect_the_others():
    records = [record("a", [[0, 0, 9, 9]], [0])]
    base = {"a": dets([[0, 0, 9, 9]], [0.5], [0])}
    noisy = {"a": dets([[0, 0, 9, 9], [0, 0, 9, 9], [40, 40, 60, 60]], [0.5, 0.99, 0.98], [0, 2, 2])}
    for clean, with_birds in zip(both(records, base), both(records, noisy), strict=True):
        assert math.isnan(with_birds["AP"]["bird"])
        assert with_birds["num_detections"]["bird"] == 2
        assert with_birds["AP"]["cat"] == clean["AP"]["cat"] == 1.0
        assert with_birds["mAP"] == clean["mAP"] == 1.0


def test_missed_objects_and_wrong_class():
    records = [
        record("a", [[0, 0, 9, 9], [20, 20, 29, 29], [40, 40, 49, 49], [60, 60, 69, 69]], [0, 0, 0, 0])
    ]
    # A dog on the first cat is a dog false positive and no cat hit; one of four cats found.
    detections = {"a": dets([[0, 0, 9, 9], [20, 20, 29, 29]], [0.9, 0.8], [1, 0])}
    voc07, voc10 = both(records, detections)
    assert voc10["AP"]["cat"] == pytest.approx(0.25)
    assert voc07["AP"]["cat"] == pytest.approx(3 / 11)  # thresholds 0, 0.1, 0.2 reach precision 1
    assert math.isnan(voc10["AP"]["dog"])


def test_overlap_uses_inclusive_pixels_and_at_least_half():
    # 10x10 pixels against 10x5 pixels: IoU is exactly 0.5 with the +1 convention (0.44 without).
    records = [record("a", [[0, 0, 9, 9]], [0])]
    assert evaluate_voc(records, {"a": dets([[0, 0, 9, 4]], [1], [0])}, CLASSES)["AP"]["cat"] == 1.0
    assert evaluate_voc(records, {"a": dets([[0, 0, 9, 3]], [1], [0])}, CLASSES)["AP"]["cat"] == 0.0


def test_detections_are_ranked_by_score_across_images():
    records = [record("a", [[0, 0, 9, 9]], [0]), record("b", [[0, 0, 9, 9]], [0])]
    # The false positive in "b" outranks the hit in "a".
    detections = [
        dets([[0, 0, 9, 9]], [0.5], [0]),
        dets([[50, 50, 60, 60], [0, 0, 9, 9]], [0.9, 0.1], [0, 0]),
    ]
    recall, precision, _ = class_precision_recall(records, detections, 0)
    np.testing.assert_allclose(recall, [0, 0.5, 1])
    np.testing.assert_allclose(precision, [0, 0.5, 2 / 3])
    # The interpolated precision at recall 0.5 is the best precision at any higher recall: 2/3.
    assert evaluate_voc(records, detections, CLASSES)["AP"]["cat"] == pytest.approx(2 / 3)


def test_inputs():
    records = [record("a", [[0, 0, 9, 9]], [0])]
    with pytest.raises(ValueError, match=r"not in the dataset, e\.g\. 'zzz'"):
        evaluate_voc(records, {"zzz": dets([[0, 0, 9, 9]], [1], [0])}, CLASSES)
    with pytest.raises(ValueError, match="2 detection entries for 1 images"):
        evaluate_voc(records, [dets([], [], []), dets([], [], [])], CLASSES)
    as_dict = [{"boxes": [[0, 0, 9, 9]], "scores": [1.0], "labels": [0]}]
    as_tuple = [([[0, 0, 9, 9]], [1.0], [0])]
    assert (
        evaluate_voc(records, as_dict, CLASSES)["mAP"]
        == evaluate_voc(records, as_tuple, CLASSES)["mAP"]
        == 1.0
    )


def test_voc07_thresholds_follow_the_devkit():
    assert len(VOC07_RECALL_THRESHOLDS) == 11
    assert VOC07_RECALL_THRESHOLDS[0] == 0.0 and VOC07_RECALL_THRESHOLDS[-1] == 1.0
    np.testing.assert_allclose(VOC07_RECALL_THRESHOLDS, np.linspace(0, 1, 11), atol=1e-15)
    assert voc_ap(np.array([]), np.array([]), use_07_metric=True) == 0.0
    assert voc_ap(np.array([]), np.array([]), use_07_metric=False) == 0.0


def devkit_ap(records, detections, label, use_07_metric):
    """The official devkit's loop, written out per detection."""
    gt = {}
    npos = 0
    for r in records:
        keep = r.labels == label
        gt[r.image_id] = (r.boxes[keep].astype(float), r.difficult[keep], np.zeros(int(keep.sum()), bool))
        npos += int((~r.difficult[keep]).sum())
    flat = [
        (image_id, s, b)
        for image_id, d in detections.items()
        for b, s, lab in zip(d.boxes, d.scores, d.labels, strict=True)
        if lab == label
    ]
    flat.sort(key=lambda x: -x[1])  # stable, like MATLAB's sort
    tp, fp = np.zeros(len(flat)), np.zeros(len(flat))
    for k, (image_id, _, bb) in enumerate(flat):
        boxes, difficult, detected = gt[image_id]
        ovmax, jmax = -np.inf, -1
        for j, g in enumerate(boxes):
            iw = min(bb[2], g[2]) - max(bb[0], g[0]) + 1
            ih = min(bb[3], g[3]) - max(bb[1], g[1]) + 1
            if iw > 0 and ih > 0:
                ua = (
                    (bb[2] - bb[0] + 1) * (bb[3] - bb[1] + 1)
                    + (g[2] - g[0] + 1) * (g[3] - g[1] + 1)
                    - iw * ih
                )
                if iw * ih / ua > ovmax:
                    ovmax, jmax = iw * ih / ua, j
        if ovmax >= 0.5:
            if not difficult[jmax]:
                if not detected[jmax]:
                    tp[k], detected[jmax] = 1, True
                else:
                    fp[k] = 1
        else:
            fp[k] = 1
    if npos == 0:
        return math.nan
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    rec = tp / npos
    prec = tp / np.maximum(tp + fp, np.finfo(float).eps)
    return voc_ap(rec, prec, use_07_metric)


coordinate = st.integers(0, 60)


@st.composite
def scenes(draw):
    records, detections = [], {}
    for i in range(draw(st.integers(1, 4))):
        n = draw(st.integers(0, 4))
        boxes = []
        for _ in range(n):
            x, y = draw(coordinate), draw(coordinate)
            boxes.append([x, y, x + draw(st.integers(0, 30)), y + draw(st.integers(0, 30))])
        labels = [draw(st.integers(0, 1)) for _ in range(n)]
        difficult = [draw(st.booleans()) for _ in range(n)]
        records.append(record(f"im{i}", boxes, labels, difficult))
        m = draw(st.integers(0, 6))
        det_boxes = []
        for _ in range(m):
            if boxes and draw(st.booleans()):
                base = boxes[draw(st.integers(0, len(boxes) - 1))]
                det_boxes.append([v + draw(st.integers(-4, 4)) for v in base])
            else:
                x, y = draw(coordinate), draw(coordinate)
                det_boxes.append([x, y, x + draw(st.integers(0, 30)), y + draw(st.integers(0, 30))])
        scores = [draw(st.sampled_from([0.1, 0.5, 0.5, 0.9, 0.3])) for _ in range(m)]
        det_labels = [draw(st.integers(0, 1)) for _ in range(m)]
        detections[f"im{i}"] = dets(det_boxes, scores, det_labels)
    return records, detections


@settings(max_examples=150)
@given(scenes(), st.booleans())
def test_matches_the_devkit_loop(scene, use_07_metric):
    records, detections = scene
    result = evaluate_voc(records, detections, ("a", "b"), use_07_metric=use_07_metric)
    for label, name in enumerate(("a", "b")):
        expected = devkit_ap(records, detections, label, use_07_metric)
        if math.isnan(expected):
            assert math.isnan(result["AP"][name])
        else:
            assert result["AP"][name] == pytest.approx(expected, abs=1e-12)
