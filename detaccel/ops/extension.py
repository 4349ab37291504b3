"""Loading of the compiled operator library ``detaccel._C``.

Importing this module tries to load the library once. Operators are then
reachable as ``torch.ops.detaccel.<name>``; :func:`require` raises a clear error
when the library is missing (for example a source tree that was never built).
"""

from __future__ import annotations

import torch

OPERATORS = (
    "roi_pool_forward",
    "roi_pool_backward",
    "spp_pool_forward",
    "spp_pool_backward",
    "nms",
    "batched_nms",
    "r2cnn_feature_levels",
    "r2cnn_level_boxes",
    "r2cnn_contrast_scores",
)
_BACKENDS = ("CPU", "CUDA")

_load_error: str | None = None
try:
    from detaccel import _C  # noqa: F401  (registers the operators)
except ImportError as error:  # pragma: no cover - depends on the build
    _load_error = f"{type(error).__name__}: {error}"


def is_loaded() -> bool:
    """Whether the compiled operators are registered with torch."""
    return _load_error is None


def load_error() -> str | None:
    """Why loading failed, or ``None``."""
    return _load_error


def require() -> None:
    """Raise ``RuntimeError`` with build instructions when the library is not loaded."""
    if _load_error is not None:
        raise RuntimeError(
            "detaccel's compiled operators are not built (" + _load_error + "). "
            "Build them with `make build` or `pip install --no-build-isolation -e .`."
        )


def has_kernel(operator: str, device_type: str) -> bool:
    """Whether ``detaccel::<operator>`` has a kernel for ``device_type`` ('cpu' or 'cuda')."""
    if _load_error is not None:
        return False
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"detaccel::{operator}", device_type.upper())


def operator_backends() -> dict[str, list[str]]:
    """Map each operator to the backends ('cpu', 'cuda') it has kernels for."""
    return {op: [b.lower() for b in _BACKENDS if has_kernel(op, b)] for op in OPERATORS}
