"""detaccel checkpoints: written atomically, read with ``weights_only=True``, checked before use.

A checkpoint is a dict::

    {"format": "detaccel-checkpoint", "version": 1, "config": {...plain dict...},
     "class_names": [...], "model": state_dict, "iteration": int,
     "optimizer": state_dict | None, "scheduler": state_dict | None, "rng": {...} | None}
"""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

FORMAT = "detaccel-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a usable detaccel checkpoint, or one that does not fit the model."""


def save_checkpoint(path: str | PathLike, checkpoint: Mapping[str, Any]) -> Path:
    """Write ``checkpoint`` to ``path`` through a temporary file in the same directory and a rename.

    A configuration whose ``data.classes`` was chosen from the dataset (``auto``,
    ``discover``) is saved with the ``class_names`` it resolved to, so that
    evaluation and detection read classes in the order the model learnt them.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "version": VERSION, **_with_resolved_classes(checkpoint)}
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(payload, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _with_resolved_classes(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """``checkpoint`` with ``config.data.classes`` as its ``class_names`` where the data chose them."""
    checkpoint = dict(checkpoint)
    config, names = checkpoint.get("config"), checkpoint.get("class_names")
    data = config.get("data") if isinstance(config, Mapping) else None
    if isinstance(data, Mapping) and data.get("classes") in ("auto", "discover") and names is not None:
        checkpoint["config"] = {**config, "data": {**data, "classes": [str(name) for name in names]}}
    return checkpoint


def load_checkpoint(path: str | PathLike) -> dict[str, Any]:
    """Read and check a checkpoint (on the CPU); :class:`CheckpointError` for anything else."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"{path}: not a detaccel checkpoint (cannot be read as a weights-only torch file: {reason})"
        ) from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a detaccel checkpoint (no {FORMAT!r} format marker)")
    if checkpoint.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: detaccel checkpoint version {checkpoint.get('version')!r} is not supported "
            f"(this version reads {VERSION})"
        )
    for key in ("config", "model", "class_names"):
        if key not in checkpoint:
            raise CheckpointError(f"{path}: detaccel checkpoint without {key!r}")
    return checkpoint


# Where earlier versions kept the detector's trained parts: old key prefix -> new one.
MOVED_PREFIXES = (
    ("proposal_generator.objectness.", "objectness."),
    ("roi_features.", "roi_heads.roi_features."),
    ("head.", "roi_heads.head."),
    ("predictor.", "roi_heads.predictor."),
)
EXTRA_STATE = "_extra_state"


def migrate_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """A state dict of an earlier layout with its keys where the detector now keeps them (lossless:
    the objectness head moved out of the proposal slot, the RoI features, head and predictor into
    ``roi_heads``)."""
    out = {}
    for key, value in state.items():
        for old, new in MOVED_PREFIXES:
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        out[key] = value
    return out


def load_model_state(model: nn.Module, state: Mapping[str, Any], source: str = "checkpoint") -> None:
    """Load ``state`` (of this layout or an earlier one, :func:`migrate_state`) into ``model`` or raise
    :class:`CheckpointError` listing the keys that disagree.

    Non-tensor state a checkpoint of an earlier version lacks (the stage an objectness head reads, the
    typical box shapes) keeps the value the model was built with from the checkpoint's configuration.
    """
    state = migrate_state(state)
    expected = model.state_dict()
    for key, value in expected.items():
        if key.endswith(EXTRA_STATE) and key not in state:
            state[key] = value
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} (checkpoint {tuple(state[k].shape)}, model {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state
        and isinstance(v, torch.Tensor)
        and tuple(getattr(state[k], "shape", ())) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        for title, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
            if keys:
                shown = ", ".join(keys[:6]) + (f", and {len(keys) - 6} more" if len(keys) > 6 else "")
                parts.append(f"{title}: {shown}")
        raise CheckpointError(f"{source} does not fit this model's architecture ({'; '.join(parts)})")
    model.load_state_dict(state)


def rng_state() -> dict[str, Any]:
    """The torch (CPU and CUDA), numpy and Python random states, as weights-only-loadable values."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [
            kind,
            torch.from_numpy(keys.astype(np.int64)),
            int(position),
            int(has_gauss),
            float(cached),
        ],
        "python": [version, list(internal), gauss],
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
