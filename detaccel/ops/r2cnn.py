"""R²-CNN RoI generation from a detector's own conv features (compiled kernels).

Steps 1–3 of R²-CNN: integrate the feature map, quantise it into levels, and
box each level and its groups (8-connected components, or the original
layer's greedy box growing; of equal levels or of superlevel sets). Mapping
the cell boxes to pixels and the local search belong to the proposal
generator (``detaccel.proposals``).
"""

from __future__ import annotations

import torch

from detaccel.ops import extension, validation


def r2cnn_feature_levels(features: torch.Tensor, num_levels: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Integrated map and feature levels of a batch of feature maps.

    Each channel is divided by its own maximum (channels whose maximum is not
    positive are skipped) and the channels are summed into ``I``; then
    ``level = floor(L * I / (max(I) + eps))`` clamped to ``[0, L - 1]``.

    Args:
        features: ``[N, C, H, W]`` floating tensor (CPU or CUDA), finite.
        num_levels: number of levels ``L``.

    Returns:
        ``(integrated [N, H, W], levels [N, H, W] int32)``; ``integrated`` is
        float32 (float64 for float64 input).
    """
    extension.require()
    validation.check_tensor("features", features)
    if features.dim() != 4:
        raise ValueError(f"features: expected 4 dims [N, C, H, W], got shape {tuple(features.shape)}")
    if not features.is_floating_point():
        raise TypeError(f"features: expected a floating-point tensor, got {features.dtype}")
    _check_num_levels(num_levels)
    if features.numel() and not torch.compiler.is_compiling() and not bool(torch.isfinite(features).all()):
        raise ValueError("features: the feature map has non-finite values")
    return torch.ops.detaccel.r2cnn_feature_levels(features, num_levels)


GROUPINGS = ("flood", "original")


def r2cnn_level_boxes(
    levels: torch.Tensor,
    num_levels: int,
    max_boxes_per_level: int = 100,
    *,
    grouping: str = "flood",
    superlevel: bool = False,
) -> list[torch.Tensor]:
    """Boxes of every level's set and of its groups, per image.

    For each level ``l`` present in an image (some cell has level ``l``), in
    increasing order: one box around all cells of the level's set, then the
    boxes of the set's groups, at most ``max_boxes_per_level`` boxes per level
    in all. The set is the cells of level ``l`` or, with ``superlevel``, of
    level ``>= l`` (nested sets; a level with no cell of its own is skipped, as
    its boxes would repeat the next level's).

    Groupings:

    - ``"flood"``: the set's 8-connected components, largest first (ties: the
      component's first cell in raster order).
    - ``"original"``: the greedy grouping of the original R²-CNN layer. The
      set's cells are listed in raster order (row by row, left to right). The
      first unassigned cell starts a group with the box of that cell; then
      one pass over the later unassigned cells, in raster order, absorbs every
      cell inside the box or touching it, i.e. with ``x1 - 1 <= x <= x2 + 1``
      and ``y1 - 1 <= y <= y2 + 1``, and grows the box to cover it at once. A
      cell passed before the box grew next to it stays unassigned for a later
      group; absorbed cells need not be 8-connected (a cell touching the box
      need not touch any of its cells), so groups may overlap, and the result
      depends on the raster order. Groups are listed in the order they were
      started (raster order of their first cell).

    Args:
        levels: ``[N, H, W]`` int32 levels in ``[0, num_levels)`` (any device;
            the grouping runs on the CPU).
        num_levels: number of levels.
        max_boxes_per_level: cap per level, at least 1.
        grouping: ``"flood"`` or ``"original"`` (see above).
        superlevel: sets of the cells ``>= l`` instead of ``== l``.

    Returns:
        one int64 tensor ``[M_i, 4]`` per image of inclusive cell boxes
        ``(x1, y1, x2, y2)``, on the CPU.
    """
    extension.require()
    validation.check_tensor("levels", levels)
    if levels.dim() != 3:
        raise ValueError(f"levels: expected 3 dims [N, H, W], got shape {tuple(levels.shape)}")
    if levels.dtype != torch.int32:
        raise TypeError(f"levels: expected int32, got {levels.dtype}")
    _check_num_levels(num_levels)
    if (
        isinstance(max_boxes_per_level, bool)
        or not isinstance(max_boxes_per_level, int)
        or max_boxes_per_level < 1
    ):
        raise ValueError(f"max_boxes_per_level: expected a positive int, got {max_boxes_per_level!r}")
    if not isinstance(grouping, str) or grouping not in GROUPINGS:
        raise ValueError(f"grouping: expected one of {', '.join(map(repr, GROUPINGS))}, got {grouping!r}")
    if not isinstance(superlevel, bool):
        raise ValueError(f"superlevel: expected True or False, got {superlevel!r}")
    levels = levels.cpu()
    if levels.numel() and (int(levels.min()) < 0 or int(levels.max()) >= num_levels):
        raise ValueError(f"levels: values must lie in [0, {num_levels})")
    boxes, image_index = torch.ops.detaccel.r2cnn_level_boxes(
        levels, num_levels, max_boxes_per_level, GROUPINGS.index(grouping), superlevel
    )
    counts = torch.bincount(image_index, minlength=levels.shape[0]).tolist()
    return list(torch.split(boxes, counts))


def _check_num_levels(num_levels: int) -> None:
    if isinstance(num_levels, bool) or not isinstance(num_levels, int) or not 1 <= num_levels <= 65536:
        raise ValueError(f"num_levels: expected an int in [1, 65536], got {num_levels!r}")


def _register() -> None:
    @torch.library.register_fake("detaccel::r2cnn_feature_levels")
    def _levels_fake(features, num_levels):
        n, _, h, w = features.shape
        dtype = torch.float64 if features.dtype == torch.float64 else torch.float32
        return features.new_empty((n, h, w), dtype=dtype), features.new_empty((n, h, w), dtype=torch.int32)


if extension.is_loaded():
    _register()
