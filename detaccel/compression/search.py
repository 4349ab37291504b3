"""Search for the smallest or fastest head within an accuracy budget (optuna's TPE sampler, constrained).

Every evaluated candidate is appended to ``search.jsonl``; a search started
again on the same output directory reads it back into the study first and goes
on from there (it resumes), so an interrupted search loses nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from detaccel.compression.candidates import (
    HEAD_LAYERS,
    Candidate,
    LayerChoice,
    candidate_from_dict,
    candidate_to_dict,
    compressed_copy,
    compressible_layers,
    head_bytes,
)
from detaccel.compression.fitness import CachedRegions
from detaccel.models.detector import RegionDetector
from detaccel.models.svd import rank_for_energy, singular_values
from detaccel.serialization import json_safe

OBJECTIVES = ("size", "latency")
SPARSITY_STEP = 0.05
MAX_SPARSITY = 0.95
RANK_FRACTIONS = (1 / 2, 1 / 4, 1 / 8, 1 / 16, 1 / 32)


@dataclass
class Evaluation:
    """One candidate's figures on the validation features."""

    name: str
    candidate: Candidate
    map: float
    map_drop: float  # VOC07 points (x100) lost against the uncompressed model
    bytes: int
    ms: float
    feasible: bool

    def to_json(self) -> dict[str, Any]:
        return json_safe(
            {
                "name": self.name,
                "candidate": candidate_to_dict(self.candidate),
                "map": self.map,
                "map_drop": self.map_drop,
                "bytes": self.bytes,
                "ms": self.ms,
                "feasible": self.feasible,
            }
        )

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> Evaluation:
        return cls(
            row["name"],
            candidate_from_dict(row["candidate"]),
            float(row["map"]),
            float(row["map_drop"]),
            int(row["bytes"]),
            float(row["ms"]),
            bool(row["feasible"]),
        )


@dataclass
class SearchResult:
    reference: Evaluation
    baselines: list[Evaluation]
    candidates: list[Evaluation] = field(default_factory=list)
    best: Evaluation | None = None


def rank_choices(in_features: int, out_features: int) -> list[int]:
    """Truncated-SVD ranks offered for a layer: fractions of its full rank, distinct, at least 8."""
    full = min(in_features, out_features)
    return sorted({max(8, int(full * f)) for f in RANK_FRACTIONS if int(full * f) < full}, reverse=True)


class HeadSearch:
    """Constrained search over the compression of ``model``'s fully connected layers.

    Args:
        model: the trained detector (not changed).
        cache: pooled validation RoIs.
        objective: ``size`` (bytes of head + predictor in the checkpoint) or
            ``latency`` (measured ms per image of head + predictor).
        max_map_drop: the budget, in VOC07 points.
        int8: offer int8 weights (for ``latency`` only where measured faster).
    """

    def __init__(
        self,
        model: RegionDetector,
        cache: CachedRegions,
        objective: str,
        max_map_drop: float,
        int8: bool = True,
        log: Callable[[str], None] = print,
    ) -> None:
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
        if max_map_drop < 0:
            raise ValueError(f"the mAP budget must be >= 0 points, got {max_map_drop}")
        self.model, self.cache, self.objective = model, cache, objective
        self.max_map_drop, self.int8, self.log = float(max_map_drop), int8, log
        self.layers = compressible_layers(model)
        if not self.layers:
            raise ValueError("the model has no uncompressed fully connected layer to search over")
        self.reference = self.evaluate("uncompressed", {})

    def score(self, evaluation: Evaluation) -> float:
        return float(evaluation.bytes if self.objective == "size" else evaluation.ms)

    def evaluate(self, name: str, candidate: Candidate) -> Evaluation:
        model, _, _ = compressed_copy(self.model, candidate)
        value = self.cache.voc07_map(model)
        reference = getattr(self, "reference", None)
        drop = 0.0 if reference is None else (reference.map - value) * 100.0
        return Evaluation(
            name,
            candidate,
            value,
            drop,
            head_bytes(model),
            self.cache.head_ms_per_image(model),
            drop <= self.max_map_drop + 1e-9,
        )

    # -- the baselines a user would try by hand ---------------------------------------------

    def baselines(self, ranks: tuple[int, ...] = (128, 128), energy: float = 0.9) -> list[Evaluation]:
        """``--svd fc6=128,fc7=128`` (ranks clipped to each layer) and ``--svd-energy 0.9``."""
        hand: Candidate = {}
        by_energy: Candidate = {}
        for name, rank in zip(HEAD_LAYERS, ranks, strict=True):
            layer = self.layers.get(name)
            if layer is None:
                continue
            full = min(layer.in_features, layer.out_features)
            hand[name] = LayerChoice(rank=min(rank, full))
            by_energy[name] = LayerChoice(rank=rank_for_energy(singular_values(layer), energy))
        label = ",".join(f"{n}={c.rank}" for n, c in hand.items())
        return [self.evaluate(f"--svd {label}", hand), self.evaluate(f"--svd-energy {energy}", by_energy)]

    # -- the search --------------------------------------------------------------------------

    def _distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        out: dict[str, optuna.distributions.BaseDistribution] = {}
        for name, layer in self.layers.items():
            if name in HEAD_LAYERS:
                out[f"{name}.rank"] = optuna.distributions.CategoricalDistribution(
                    [0, *rank_choices(layer.in_features, layer.out_features)]
                )
            out[f"{name}.sparsity"] = optuna.distributions.FloatDistribution(
                0.0, MAX_SPARSITY, step=SPARSITY_STEP
            )
            if self.int8:
                out[f"{name}.int8"] = optuna.distributions.CategoricalDistribution([False, True])
        return out

    def _candidate(self, params: dict[str, Any]) -> Candidate:
        out: Candidate = {}
        for name in self.layers:
            rank = int(params.get(f"{name}.rank", 0))
            out[name] = LayerChoice(
                rank=rank or None,
                sparsity=round(float(params.get(f"{name}.sparsity", 0.0)), 4),
                int8=bool(params.get(f"{name}.int8", False)),
            )
        return out

    def _params(self, candidate: Candidate) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for name in self.layers:
            choice = candidate.get(name, LayerChoice())
            if name in HEAD_LAYERS:
                params[f"{name}.rank"] = choice.rank or 0
            params[f"{name}.sparsity"] = choice.sparsity
            if self.int8:
                params[f"{name}.int8"] = choice.int8
        return params

    def run(
        self,
        evaluations: int,
        log_path: Path,
        seed: int = 0,
        time_limit: float | None = None,
    ) -> SearchResult:
        """Evaluate up to ``evaluations`` candidates (those already in ``log_path`` count), appending each."""
        result = SearchResult(self.reference, self.baselines())
        distributions = self._distributions()
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(evaluations // 3, 1)))
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(direction="minimize", sampler=sampler)
        for row in read_log(log_path):
            evaluation = Evaluation.from_json(row)
            params = self._params(evaluation.candidate)
            try:
                trial = optuna.trial.create_trial(
                    params=params,
                    distributions={k: distributions[k] for k in params},
                    value=self.score(evaluation),
                    constraints={"map_drop": evaluation.map_drop - self.max_map_drop},
                )
            except ValueError as error:
                raise ValueError(
                    f"{log_path}: a logged candidate does not fit this search ({error}); "
                    "use another output directory or delete the file"
                ) from None
            study.add_trial(trial)
            result.candidates.append(evaluation)
        if result.candidates:
            self.log(f"resumed: {len(result.candidates)} candidates read from {log_path}")
        started = time.perf_counter()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("a", encoding="utf-8") as log_file:
            while len(result.candidates) < evaluations:
                if time_limit is not None and time.perf_counter() - started > time_limit:
                    self.log(f"time limit of {time_limit:.0f} s reached")
                    break
                trial = study.ask(distributions)
                evaluation = self.evaluate(f"trial {len(result.candidates)}", self._candidate(trial.params))
                trial.set_constraint("map_drop", evaluation.map_drop - self.max_map_drop)
                study.tell(trial, self.score(evaluation))
                result.candidates.append(evaluation)
                log_file.write(json.dumps(evaluation.to_json()) + "\n")
                log_file.flush()
                self.log(
                    f"{evaluation.name:>10s}: mAP {evaluation.map:.4f} ({-evaluation.map_drop:+.2f} pt) "
                    f"{evaluation.bytes / 1e6:8.3f} MB {evaluation.ms:8.2f} ms"
                    f"{'' if evaluation.feasible else '  (over budget)'}"
                )
        feasible = [e for e in (*result.candidates, *result.baselines) if e.feasible]
        result.best = min(feasible, key=self.score) if feasible else None
        return result


def read_log(path: Path) -> list[dict[str, Any]]:
    """The candidates of a ``search.jsonl`` (a cut-off last line, from an interruption, is ignored)."""
    if not path.is_file():
        return []
    rows = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise ValueError(f"{path}:{number}: not a JSON line") from None
    return rows


def pareto_front(evaluations: list[Evaluation], score: Callable[[Evaluation], float]) -> list[Evaluation]:
    """The evaluations no other one beats on both the objective and the mAP, by increasing objective."""
    front, best_map = [], -1.0
    for evaluation in sorted(evaluations, key=lambda e: (score(e), -e.map)):
        if evaluation.map > best_map:
            front.append(evaluation)
            best_map = evaluation.map
    return front
