"""Learning-rate schedule: linear warm-up, then step decay at fixed points of the run.

``train.steps`` are iterations out of ``train.max_iter``. A run bounded by
``train.max_seconds`` too ends at whichever comes first, so each step is read as
a position in the run (``step / max_iter``) and fires once that much of the
iterations *or* of the seconds has passed: a time-bounded run decays on the
same schedule, shrunk to the iterations it has time for, instead of never.
"""

from __future__ import annotations

from typing import Any

import torch

from detaccel.config.schema import Config


class StepSchedule:
    """Sets each parameter group's learning rate before every iteration (``apply``)."""

    def __init__(self, config: Config, optimizer: torch.optim.Optimizer) -> None:
        train = config.train
        self.optimizer = optimizer
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.max_iter = max(int(train.max_iter), 1)
        self.step_fractions = [int(s) / self.max_iter for s in train.steps]
        self.max_seconds = train.max_seconds
        self.gamma = float(train.gamma)
        self.warmup_iters = int(train.warmup_iters)
        self.decays = 0  # steps passed so far; never goes back (a resumed run keeps its decays)

    def progress(self, iteration: int, seconds: float) -> float:
        """Fraction of the run done: the larger of the iterations' and the seconds' fractions."""
        done = iteration / self.max_iter
        if self.max_seconds:
            done = max(done, seconds / self.max_seconds)
        return done

    def factor(self, iteration: int, seconds: float = 0.0) -> float:
        """Multiplier of the base learning rate at ``iteration`` after ``seconds`` of training.

        Records the steps passed, so that a later call never undoes a decay.
        """
        at = self.progress(iteration, seconds)
        self.decays = max(self.decays, sum(at >= fraction for fraction in self.step_fractions))
        value = self.gamma**self.decays
        if self.warmup_iters and iteration < self.warmup_iters:
            value *= 0.1 + 0.9 * iteration / self.warmup_iters
        return value

    def apply(self, iteration: int, seconds: float = 0.0) -> float:
        """Set the learning rates for ``iteration``; returns the multiplier used."""
        value = self.factor(iteration, seconds)
        for group, lr in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = lr * value
        return value

    def state_dict(self) -> dict[str, Any]:
        return {"decays": self.decays}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the decays passed (a state without them, as older checkpoints hold, restores none)."""
        self.decays = int(state.get("decays", 0))
