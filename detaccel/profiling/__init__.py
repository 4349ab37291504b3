"""Per-stage latency profiling of detection.

Code marks its stages with ``with profiling.stage("backbone"):``; nothing is
measured unless a :class:`StageTimer` is active (``with timer.activate():``),
so the marks cost a context-variable lookup when profiling is off.
"""

from detaccel.profiling.report import plot_stacked_bars, summary_csv, summary_markdown
from detaccel.profiling.timer import DETECTION_STAGES, StageStats, StageTimer, active_timer, stage
from detaccel.profiling.trace import chrome_trace

__all__ = [
    "DETECTION_STAGES",
    "StageStats",
    "StageTimer",
    "active_timer",
    "chrome_trace",
    "plot_stacked_bars",
    "stage",
    "summary_csv",
    "summary_markdown",
]
