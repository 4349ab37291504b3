"""``torch.compile`` of a whole ``predict``: the operators' fake kernels let Dynamo trace around them,
breaking the graph where sizes depend on the data (NMS, the R²-CNN levels, the RoI assignment)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from detaccel.engine import DistInfo, Trainer
from detaccel.engine.loading import load_detector
from detaccel.engine.trainer import FINAL_MODEL
from tests.detector_configs import LEARNED_R2CNN, tiny_config, tiny_dataset


@pytest.mark.parametrize("test_scales", [None, [56, 72]], ids=["one_scale", "two_scales"])
def test_compiled_predict_gives_the_eager_detections(tmp_path, test_scales):
    torch._dynamo.reset()
    data = tiny_dataset(tmp_path / "data")
    config = tiny_config(
        data,
        "fast_rcnn",
        backbone={"name": "small", "width": 8, "stride": 16},
        proposals=LEARNED_R2CNN,
        train={"max_iter": 3},
        data={"test_scales": test_scales} if test_scales else {},
    )
    Trainer(config, tmp_path / "out", DistInfo(), progress=False).train()
    _, model, _ = load_detector(str(tmp_path / "out" / FINAL_MODEL))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (72, 96, 3), dtype=np.uint8), rng.integers(0, 255, (60, 90, 3), np.uint8)]
    compiled = torch.compile(model.predict)  # inductor, the default backend, on the CPU
    for image in images:
        expected, got = model.predict(image)[0], compiled(image)[0]
        assert len(expected.boxes) > 0
        assert torch.equal(got.labels, expected.labels)
        torch.testing.assert_close(got.boxes, expected.boxes, atol=1e-3, rtol=0)
        torch.testing.assert_close(got.scores, expected.scores, atol=1e-5, rtol=0)
        np.testing.assert_array_equal(got.proposals, expected.proposals)
