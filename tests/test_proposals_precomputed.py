import json
import pickle

import numpy as np
import pytest

from detaccel.proposals import build_generator
from detaccel.proposals.precomputed import MissingProposalsError, ProposalsFileError

IMAGE = np.zeros((50, 60, 3), np.uint8)
BOXES = {
    "000005": np.array([[1, 2, 30, 40], [0, 0, 59, 49], [5, 5, 80, 20]], np.float32),
    "7": np.array([[10, 10, 20, 20]], np.float32),
}
CLIPPED_000005 = [[1, 2, 30, 40], [0, 0, 59, 49], [5, 5, 59, 20]]
SCORES = np.array([0.2, 0.9, 0.5], np.float32)


def write(path, content):
    if path.suffix == ".npz":
        np.savez(path, **content)
    elif path.suffix == ".json":
        path.write_text(json.dumps(content))
    else:
        path.write_bytes(pickle.dumps(content))
    return path


@pytest.mark.parametrize("suffix", [".npz", ".json", ".pkl", ".pickle"])
def test_boxes_from_each_format(tmp_path, suffix):
    content = {key: value.tolist() if suffix == ".json" else value for key, value in BOXES.items()}
    generator = build_generator("precomputed", path=write(tmp_path / f"boxes{suffix}", content))
    result = generator.generate(IMAGE, image_id="000005")
    np.testing.assert_array_equal(result.boxes, CLIPPED_000005)
    assert result.scores is None
    np.testing.assert_array_equal(generator.generate(IMAGE, image_id=7).boxes, BOXES["7"])  # int id, str key


@pytest.mark.parametrize("suffix", [".npz", ".json", ".pkl"])
def test_score_column_orders_the_boxes(tmp_path, suffix):
    array = np.concatenate([BOXES["000005"], SCORES[:, None]], axis=1)
    content = {"000005": array.tolist() if suffix == ".json" else array}
    result = build_generator("precomputed", path=write(tmp_path / f"s{suffix}", content)).generate(
        IMAGE, image_id="000005"
    )
    np.testing.assert_array_equal(result.boxes, np.array(CLIPPED_000005)[[1, 2, 0]])
    np.testing.assert_allclose(result.scores, [0.9, 0.5, 0.2])


@pytest.mark.parametrize("suffix", [".json", ".pkl"])
def test_boxes_and_scores_as_a_mapping(tmp_path, suffix):
    entry = {"boxes": BOXES["000005"].tolist(), "scores": SCORES.tolist()}
    path = write(tmp_path / f"m{suffix}", {"000005": entry})
    result = build_generator("precomputed", path=path).generate(IMAGE, image_id="000005")
    np.testing.assert_allclose(result.scores, [0.9, 0.5, 0.2])


def test_pickled_tuples_and_int_keys(tmp_path):
    path = write(tmp_path / "t.pkl", {5: (BOXES["000005"], SCORES)})
    result = build_generator("precomputed", path=path).generate(IMAGE, image_id=5)
    np.testing.assert_allclose(result.scores, [0.9, 0.5, 0.2])


def test_packed_npz(tmp_path):
    path = tmp_path / "packed.npz"
    np.savez(
        path,
        image_ids=np.array(["000005", "7"]),
        counts=np.array([3, 1]),
        boxes=np.concatenate([BOXES["000005"], BOXES["7"]]),
        scores=np.array([0.2, 0.9, 0.5, 1.0], np.float32),
    )
    generator = build_generator("precomputed", path=path)
    assert generator.image_ids() == ["000005", "7"]
    np.testing.assert_allclose(generator.generate(IMAGE, image_id="000005").scores, [0.9, 0.5, 0.2])
    np.testing.assert_array_equal(generator.generate(IMAGE, image_id="7").boxes, BOXES["7"])


def test_coco_results_json(tmp_path):
    results = [
        {"image_id": 7, "category_id": 1, "bbox": [10, 10, 11, 11], "score": 0.4},
        {"image_id": 7, "category_id": 1, "bbox": [0, 0, 5, 6], "score": 0.8},
    ]
    path = write(tmp_path / "coco.json", results)
    result = build_generator("precomputed", path=path).generate(IMAGE, image_id=7)
    np.testing.assert_array_equal(result.boxes, [[0, 0, 4, 5], [10, 10, 20, 20]])


@pytest.mark.parametrize("suffix", [".npz", ".json", ".pkl"])
def test_missing_image_id_names_the_id_and_the_file(tmp_path, suffix):
    content = {key: value.tolist() if suffix == ".json" else value for key, value in BOXES.items()}
    path = write(tmp_path / f"boxes{suffix}", content)
    generator = build_generator("precomputed", path=path)
    with pytest.raises(MissingProposalsError) as info:
        generator.generate(IMAGE, image_id="000009")
    assert "'000009'" in str(info.value) and str(path) in str(info.value)


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="expected a file ending in"):
        build_generator("precomputed", path=tmp_path / "boxes.txt")
    with pytest.raises(FileNotFoundError, match="not found"):
        build_generator("precomputed", path=tmp_path / "absent.npz").generate(IMAGE, image_id="1")
    path = write(tmp_path / "b.json", {"1": [[1, 2, 3]]})
    generator = build_generator("precomputed", path=path)
    with pytest.raises(ValueError, match="image_id"):
        generator.generate(IMAGE)
    with pytest.raises(ProposalsFileError, match=r"image id '1'.*\[N, 4\]"):
        generator.generate(IMAGE, image_id="1")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ProposalsFileError, match=r"broken\.json"):
        build_generator("precomputed", path=tmp_path / "broken.json").generate(IMAGE, image_id="1")


def test_batch_and_pickling(tmp_path):
    path = write(tmp_path / "boxes.npz", BOXES)
    generator = build_generator("precomputed", path=path, max_proposals=1)
    results = generator.generate_batch([IMAGE, IMAGE], image_ids=["000005", "7"])
    assert [len(r) for r in results] == [1, 1]
    clone = pickle.loads(pickle.dumps(generator))
    np.testing.assert_array_equal(clone.generate(IMAGE, image_id="7").boxes, BOXES["7"])
