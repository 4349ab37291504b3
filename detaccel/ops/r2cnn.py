"""R²-CNN RoI generation from a detector's own conv features (compiled kernels).

Steps 1–3 of R²-CNN: integrate the feature map, quantise it into levels, and
box each level and its groups (8-connected components, or the original
layer's greedy box growing; of equal levels or of superlevel sets); and the
contrast score its boxes are ranked by. Mapping the cell boxes to pixels and
the local search belong to the proposal generator (``detaccel.proposals``).
"""

from __future__ import annotations

import math

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
    return _per_image(boxes, image_index, levels.shape[0])


@torch.compiler.disable
def _per_image(boxes: torch.Tensor, image_index: torch.Tensor, count: int) -> list[torch.Tensor]:
    """``boxes`` split by image (rows come image by image); run eagerly under ``torch.compile``, as the
    sizes depend on the data."""
    counts = torch.bincount(image_index, minlength=count).tolist()
    return list(torch.split(boxes, counts))


def r2cnn_contrast_scores(
    integrated: torch.Tensor,
    boxes: torch.Tensor,
    field: tuple[float, float, float, float],
    ring: float = 0.5,
) -> torch.Tensor:
    """Contrast score of each pixel box on an integrated map: the mean inside it minus the mean over a
    ring around it, ``[K]`` float32 on the CPU.

    Box ``(x1, y1, x2, y2)`` (inclusive pixels) covers cells ``(p - offset) / stride``
    rounded half up and clipped to the map (never inverted); the ring is the box
    grown by ``ring`` times its size in cells on every side, minus the box (its
    mean is 0 when it holds no cell). Sums come from a summed-area table in double
    precision: O(1) per box. The cheap objectness R²-CNN ranks its boxes by.

    Args:
        integrated: ``[H, W]`` floating map (any device; scored on the CPU), finite.
        boxes: ``[K, 4]`` floating pixel boxes, finite.
        field: ``(stride_x, offset_x, stride_y, offset_y)``: cell ``c`` is centred at pixel
            ``offset + stride * c``; strides positive.
        ring: the ring's width as a fraction of the box's size, non-negative.
    """
    extension.require()
    validation.check_tensor("integrated", integrated)
    validation.check_tensor("boxes", boxes)
    if integrated.dim() != 2 or not integrated.is_floating_point():
        raise ValueError(f"integrated: expected a floating-point map [H, W], got {integrated.dtype} "
                         f"{tuple(integrated.shape)}")  # fmt: skip
    if boxes.dim() != 2 or boxes.shape[1] != 4 or not boxes.is_floating_point():
        raise ValueError(f"boxes: expected floating-point [K, 4], got {boxes.dtype} {tuple(boxes.shape)}")
    stride_x, offset_x, stride_y, offset_y = (float(v) for v in field)
    if not (math.isfinite(stride_x) and math.isfinite(stride_y) and stride_x > 0 and stride_y > 0):
        raise ValueError(f"field: strides must be positive and finite, got {stride_x} and {stride_y}")
    if not (math.isfinite(offset_x) and math.isfinite(offset_y)):
        raise ValueError(f"field: offsets must be finite, got {offset_x} and {offset_y}")
    if not (math.isfinite(ring) and ring >= 0):
        raise ValueError(f"ring: expected a non-negative number, got {ring!r}")
    boxes = boxes.detach().cpu()
    if not len(boxes):
        return torch.zeros(0, dtype=torch.float32)
    integrated = integrated.detach().cpu()
    if integrated.numel() == 0:
        raise ValueError(f"integrated: the map is empty ({tuple(integrated.shape)})")
    if not bool(torch.isfinite(boxes).all()):
        raise ValueError("boxes: non-finite coordinates")
    if not bool(torch.isfinite(integrated).all()):
        raise ValueError("integrated: the map has non-finite values")
    return torch.ops.detaccel.r2cnn_contrast_scores(
        integrated, boxes, stride_x, offset_x, stride_y, offset_y, float(ring)
    )


def _check_num_levels(num_levels: int) -> None:
    if isinstance(num_levels, bool) or not isinstance(num_levels, int) or not 1 <= num_levels <= 65536:
        raise ValueError(f"num_levels: expected an int in [1, 65536], got {num_levels!r}")


def _register() -> None:
    @torch.library.register_fake("detaccel::r2cnn_feature_levels")
    def _levels_fake(features, num_levels):
        n, _, h, w = features.shape
        dtype = torch.float64 if features.dtype == torch.float64 else torch.float32
        return features.new_empty((n, h, w), dtype=dtype), features.new_empty((n, h, w), dtype=torch.int32)

    @torch.library.register_fake("detaccel::r2cnn_level_boxes")
    def _level_boxes_fake(levels, num_levels, max_boxes_per_level, grouping=0, superlevel=False):
        # Data-dependent: at most max_boxes_per_level boxes for each level of each image.
        count = torch.library.get_ctx().new_dynamic_size()
        return (
            levels.new_empty((count, 4), dtype=torch.int64),
            levels.new_empty((count,), dtype=torch.int64),
        )

    @torch.library.register_fake("detaccel::r2cnn_contrast_scores")
    def _contrast_fake(integrated, boxes, stride_x, offset_x, stride_y, offset_y, ring=0.5):
        return boxes.new_empty((boxes.shape[0],), dtype=torch.float32)


if extension.is_loaded():
    _register()
