import cv2
import numpy as np
import pytest

from detaccel.proposals import (
    GeneratorBase,
    ProposalGenerator,
    Proposals,
    RawProposals,
    available_generators,
    build_from_config,
    build_generator,
    generator_parameters,
    register_generator,
    to_bgr8,
)
from detaccel.proposals.registry import _REGISTERED
from tests.proposal_images import scene, variants

BUILTIN = ["edge_boxes", "precomputed", "r2cnn", "selective_search", "sliding_window"]


class FixedBoxes(GeneratorBase):
    name = "fixed_boxes"

    def __init__(self, *, boxes=((0, 0, 9, 9),), scores=None, max_proposals=None, min_size=1.0):
        super().__init__(max_proposals=max_proposals, min_size=min_size)
        self.boxes = boxes
        self.scores = scores

    def _propose(self, image, features, image_id):
        return RawProposals(np.array(self.boxes, dtype=float).reshape(-1, 4), self.scores)


@pytest.fixture
def registered():
    register_generator("fixed-boxes", FixedBoxes)
    yield
    _REGISTERED.pop("fixed_boxes", None)


def test_builtin_names_are_listed():
    assert set(BUILTIN) <= set(available_generators())


@pytest.mark.parametrize("name", ["sliding_window", "Sliding-Window", " sliding_window "])
def test_names_ignore_case_hyphens_and_spaces(name):
    assert build_generator(name).name == "sliding_window"


def test_unknown_name_lists_known_generators():
    with pytest.raises(ValueError, match="unknown proposal generator 'selective'") as info:
        build_generator("selective")
    for name in BUILTIN:
        assert name in str(info.value)


def test_unknown_parameter_is_named_with_the_accepted_ones():
    with pytest.raises(
        ValueError, match="unknown parameter 'max_box' for proposal generator 'edge_boxes'"
    ) as info:
        build_generator("edge_boxes", max_box=10)
    assert "max_boxes" in str(info.value)
    with pytest.raises(ValueError, match="unknown parameters 'a', 'b'"):
        build_generator("sliding_window", a=1, b=2)


def test_missing_required_parameter_is_named():
    with pytest.raises(ValueError, match="needs parameter 'path'"):
        build_generator("precomputed")


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("selective_search", {"mode": "slow"}, "mode"),
        ("selective_search", {"max_side": 0}, "max_side"),
        ("edge_boxes", {"alpha": 1.5}, "alpha"),
        ("sliding_window", {"stride_fraction": 0}, "stride_fraction"),
        ("sliding_window", {"scales": []}, "scales"),
        ("sliding_window", {"max_proposals": 0}, "max_proposals"),
        ("sliding_window", {"min_size": -1}, "min_size"),
        ("r2cnn", {"backbone": None}, "receptive_field"),
        ("r2cnn", {"backbone": None, "receptive_field": (16, 7.5, 196), "footprint": "cell"}, "footprint"),
        ("r2cnn", {"backbone": None, "receptive_field": (16, 7.5, 196), "num_levels": 0}, "num_levels"),
        ("r2cnn", {"backbone": "resnet50"}, "unknown backbone"),
    ],
)
def test_bad_parameter_values_name_the_parameter(name, params, message):
    with pytest.raises(ValueError, match=message):
        build_generator(name, **params)


def test_parameters_list_defaults():
    params = generator_parameters("sliding_window")
    assert params["stride_fraction"] == 0.5
    assert params["max_proposals"] is None
    assert "self" not in params


def test_build_from_config_and_parameters_round_trip():
    generator = build_from_config({"name": "sliding_window", "scales": [16, 32], "max_proposals": 7})
    assert generator.scales == (16.0, 32.0)
    assert generator.max_proposals == 7
    again = build_generator("sliding_window", **generator.parameters())
    assert again.parameters() == generator.parameters()
    assert repr(generator).startswith("SlidingWindow(")
    with pytest.raises(ValueError, match="'name'"):
        build_from_config({"scales": [16]})


def test_registered_generator_runs_through_post_processing(registered):
    generator = build_generator(
        "fixed_boxes", boxes=[(-5, 2, 8, 30), (3, 3, 3, 3), (0, 0, 0, 0)], max_proposals=1
    )
    assert isinstance(generator, ProposalGenerator)
    result = generator.generate(np.zeros((20, 10, 3), np.uint8))
    assert isinstance(result, Proposals)
    np.testing.assert_array_equal(result.boxes, [[0, 2, 8, 19]])
    assert result.boxes.dtype == np.float32
    assert result.scores is None
    assert result.image_size == (20, 10)
    assert set(result.timings) == {"proposals", "postprocess"}
    assert result.seconds >= 0


def test_register_rejects_non_generators():
    with pytest.raises(TypeError):
        register_generator("nothing", object)


def test_generate_batch_passes_ids_and_checks_lengths(registered):
    generator = build_generator("fixed_boxes", boxes=[(0, 0, 4, 4)], scores=[0.5])
    images = [np.zeros((8, 8, 3), np.uint8), np.zeros((6, 5), np.uint8)]
    results = generator.generate_batch(images, image_ids=["a", "b"])
    assert [r.image_size for r in results] == [(8, 8), (6, 5)]
    np.testing.assert_array_equal(results[1].scores, [0.5])
    with pytest.raises(ValueError, match="2 images but 1 image ids"):
        generator.generate_batch(images, image_ids=["a"])
    with pytest.raises(ValueError, match="2 images but 3 feature maps"):
        generator.generate_batch(images, features=[None, None, None])


@pytest.mark.parametrize(
    "kind", ["color", "gray", "gray_1ch", "bgra", "uint16", "float", "tiny", "one_pixel"]
)
def test_to_bgr8_converts_every_supported_layout(kind):
    image = scene()
    converted = to_bgr8(variants(image)[kind])
    assert converted.dtype == np.uint8
    assert converted.ndim == 3 and converted.shape[2] == 3
    assert converted.flags["C_CONTIGUOUS"]
    if kind in ("color", "bgra", "uint16", "float"):
        np.testing.assert_array_equal(converted, image)
    if kind.startswith("gray"):
        np.testing.assert_array_equal(converted[:, :, 0], cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))


@pytest.mark.parametrize(
    ("image", "error"),
    [
        (np.zeros((0, 5, 3), np.uint8), ValueError),
        (np.zeros((4, 5, 2), np.uint8), ValueError),
        (np.zeros((4, 5, 3, 1), np.uint8), ValueError),
        (np.zeros((4, 5, 3), np.int32), TypeError),
        ([[0, 1], [2, 3]], TypeError),
    ],
)
def test_to_bgr8_rejects_bad_images(image, error):
    with pytest.raises(error, match="image"):
        to_bgr8(image)


def test_proposals_checks_its_fields():
    result = Proposals(np.zeros((2, 4)), np.array([0.2, 0.1]), (3, 4))
    assert len(result) == 2 and result.boxes.dtype == np.float32 and result.scores.dtype == np.float32
    with pytest.raises(ValueError, match="2 boxes but 1 scores"):
        Proposals(np.zeros((2, 4)), np.zeros(1), (3, 4))
