import json

import pytest
import torch

from detaccel.engine import DistInfo, Trainer
from detaccel.engine.schedule import StepSchedule
from tests.detector_configs import tiny_config, tiny_dataset


def _schedule(dataset_root, **train):
    config = tiny_config(dataset_root, train=train)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=config.train.base_lr)
    return config, optimizer, StepSchedule(config, optimizer)


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("synthetic"))


def test_steps_in_iterations_with_warm_up(dataset_root):
    _, _, schedule = _schedule(dataset_root, max_iter=2000, steps=[1500, 1800], warmup_iters=10)
    assert schedule.factor(0) == pytest.approx(0.1)
    assert schedule.factor(5) == pytest.approx(0.55)
    assert schedule.factor(1499) == 1.0
    assert schedule.factor(1500) == pytest.approx(0.1)
    assert schedule.factor(1800) == pytest.approx(0.01)


def test_a_time_bounded_run_decays_at_the_same_fraction_of_its_seconds(dataset_root):
    config, optimizer, schedule = _schedule(dataset_root, max_iter=2000, steps=[1500], max_seconds=100.0)
    assert schedule.apply(10, seconds=74.0) == 1.0
    assert optimizer.param_groups[0]["lr"] == pytest.approx(config.train.base_lr)
    assert schedule.apply(11, seconds=75.0) == pytest.approx(0.1)  # 1500 / 2000 of the 100 s
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * config.train.base_lr)
    # A decay that fired stays, and survives a checkpoint (older checkpoints' states restore none).
    assert schedule.factor(12, seconds=0.0) == pytest.approx(0.1)
    _, _, restored = _schedule(dataset_root, max_iter=2000, steps=[1500], max_seconds=100.0)
    restored.load_state_dict(schedule.state_dict())
    assert restored.factor(12) == pytest.approx(0.1)
    restored.load_state_dict({"base_lrs": [0.1], "last_epoch": 3})
    assert restored.factor(12) == 1.0


def test_trainer_applies_the_schedule(dataset_root, tmp_path):
    config = tiny_config(dataset_root, train={"max_iter": 4, "steps": [2], "log_period": 1})
    Trainer(config, tmp_path / "run", DistInfo(), progress=False).train()
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    base = config.train.base_lr
    assert [e["lr"] for e in lines] == pytest.approx([base, base, 0.1 * base, 0.1 * base])
