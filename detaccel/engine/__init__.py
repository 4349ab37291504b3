"""Training, checkpoints, multi-process helpers, evaluation and logging."""

from detaccel.engine.checkpoint import CheckpointError, load_checkpoint, load_model_state, save_checkpoint
from detaccel.engine.data import DataSetupError
from detaccel.engine.distributed import DistInfo, init_distributed, shutdown_distributed
from detaccel.engine.trainer import FINAL_MODEL, LAST_CHECKPOINT, Trainer

__all__ = [
    "FINAL_MODEL",
    "LAST_CHECKPOINT",
    "CheckpointError",
    "DataSetupError",
    "DistInfo",
    "Trainer",
    "init_distributed",
    "load_checkpoint",
    "load_model_state",
    "save_checkpoint",
    "shutdown_distributed",
]
