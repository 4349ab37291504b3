"""Automatic compression of the detection head under an accuracy budget (``detaccel compress --auto``).

:mod:`.candidates` applies per-layer truncated SVD, magnitude pruning and int8;
:mod:`.fitness` scores a head on RoI features pooled once; :mod:`.search`
runs the constrained search (optuna TPE) with a resumable log; :mod:`.report`
draws the Pareto plot and writes the summary; :mod:`.auto` ties them together.
"""

from detaccel.compression.auto import AutoCompression, BudgetNotMet, run_auto
from detaccel.compression.candidates import LayerChoice, compressed_copy, head_bytes
from detaccel.compression.fitness import CachedRegions
from detaccel.compression.search import HeadSearch, pareto_front

__all__ = [
    "AutoCompression",
    "BudgetNotMet",
    "CachedRegions",
    "HeadSearch",
    "LayerChoice",
    "compressed_copy",
    "head_bytes",
    "pareto_front",
    "run_auto",
]
