import numpy as np
import pytest

from detaccel.proposals import build_generator
from detaccel.proposals.sliding_window import window_positions, window_sizes


def test_positions_cover_the_axis():
    np.testing.assert_array_equal(window_positions(160, 64, 32), [0, 32, 64, 96])
    np.testing.assert_array_equal(window_positions(120, 64, 32), [0, 32, 56])
    np.testing.assert_array_equal(window_positions(64, 64, 32), [0])
    np.testing.assert_array_equal(window_positions(50, 64, 32), [0])


def test_window_sizes():
    assert window_sizes(64, 1.0) == (64, 64)
    assert window_sizes(64, 4.0) == (128, 32)
    assert window_sizes(64, 0.5) == (45, 91)


def test_counts_for_a_known_configuration():
    generator = build_generator("sliding_window", scales=[64], aspect_ratios=[1.0], stride_fraction=0.5)
    result = generator.generate(np.zeros((120, 160, 3), np.uint8))
    assert len(result) == 4 * 3
    assert result.scores is None
    np.testing.assert_array_equal(
        result.boxes[:5],
        [[0, 0, 63, 63], [32, 0, 95, 63], [64, 0, 127, 63], [96, 0, 159, 63], [0, 32, 63, 95]],
    )
    np.testing.assert_array_equal(result.boxes[-1], [96, 56, 159, 119])


def test_counts_over_scales_and_ratios():
    generator = build_generator(
        "sliding_window", scales=[32, 64], aspect_ratios=[0.5, 1.0, 2.0], stride_fraction=0.5
    )
    windows = generator.windows(120, 160)
    expected = 0
    for scale in (32, 64):
        for ratio in (0.5, 1.0, 2.0):
            w, h = window_sizes(scale, ratio)
            expected += len(window_positions(160, w, round(w / 2))) * len(
                window_positions(120, h, round(h / 2))
            )
    assert len(windows) == expected
    assert len(generator.generate(np.zeros((120, 160), np.uint8))) == expected  # all distinct and inside


def test_oversized_windows_are_clipped_and_deduplicated():
    generator = build_generator("sliding_window", scales=[512, 1024], aspect_ratios=[1.0, 2.0])
    result = generator.generate(np.zeros((120, 160, 3), np.uint8))
    np.testing.assert_array_equal(result.boxes, [[0, 0, 159, 119]])


@pytest.mark.parametrize("shape", [(10, 12, 3), (1, 1)])
def test_tiny_images(shape):
    result = build_generator("sliding_window").generate(np.zeros(shape, np.uint8))
    np.testing.assert_array_equal(result.boxes, [[0, 0, shape[1] - 1, shape[0] - 1]])


def test_cap_keeps_the_first_windows():
    generator = build_generator("sliding_window", scales=[64], aspect_ratios=[1.0], max_proposals=3)
    result = generator.generate(np.zeros((120, 160, 3), np.uint8))
    np.testing.assert_array_equal(result.boxes[:, 0], [0, 32, 64])
