"""Plain PyTorch reference implementations of the compiled operators.

Slow and simple on purpose: the tests check the kernels against them. The
bin arithmetic is done in the input's floating type (float32 or float64)
exactly as the kernels and torchvision do it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

FLT_MAX = float(np.finfo(np.float32).max)


def _round_half_away(value: float) -> int:
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


def _bin_ranges(start: int, extent: int, bins: int, size: int, ftype) -> list[tuple[int, int]]:
    bin_size = ftype(extent) / ftype(bins)
    ranges = []
    for p in range(bins):
        lo = math.floor(ftype(p) * bin_size) + start
        hi = math.ceil(ftype(p + 1) * bin_size) + start
        ranges.append((min(max(lo, 0), size), min(max(hi, 0), size)))
    return ranges


def roi_pool_reference(
    input: torch.Tensor, rois: torch.Tensor, output_size: tuple[int, int], spatial_scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """RoI max pooling; returns ``(output [K, C, h, w], argmax [K, C, h, w])`` like the kernel."""
    ftype = np.float64 if input.dtype == torch.float64 else np.float32
    pooled_h, pooled_w = output_size
    num_rois, channels = rois.shape[0], input.shape[1]
    height, width = input.shape[2], input.shape[3]
    output = torch.zeros((num_rois, channels, pooled_h, pooled_w), dtype=input.dtype)
    argmax = torch.full((num_rois, channels, pooled_h, pooled_w), -1, dtype=torch.int32)
    data = input.detach().cpu()
    for k, roi in enumerate(rois.detach().cpu().to(input.dtype).numpy().astype(ftype)):
        scale = ftype(spatial_scale)
        x1, y1, x2, y2 = (_round_half_away(float(ftype(v) * scale)) for v in roi[1:])
        roi_w, roi_h = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)
        plane = data[int(roi[0])]
        for ph, (hs, he) in enumerate(_bin_ranges(y1, roi_h, pooled_h, height, ftype)):
            for pw, (ws, we) in enumerate(_bin_ranges(x1, roi_w, pooled_w, width, ftype)):
                if he <= hs or we <= ws:
                    continue  # empty bin: 0, argmax -1
                region = plane[:, hs:he, ws:we].reshape(channels, -1)
                cells = (torch.arange(hs, he)[:, None] * width + torch.arange(ws, we)[None, :]).flatten()
                finite = torch.where(torch.isnan(region), torch.full_like(region, -math.inf), region)
                best, where = finite.max(dim=1)  # first maximum in row-major order
                found = best > -FLT_MAX
                output[k, :, ph, pw] = torch.where(found, best, torch.full_like(best, -FLT_MAX))
                argmax[k, :, ph, pw] = torch.where(found, cells[where].to(torch.int32), -1)
    return output, argmax


def spp_pool_reference(
    input: torch.Tensor, rois: torch.Tensor, levels: Sequence[int], spatial_scale: float
) -> torch.Tensor:
    """Spatial pyramid pooling as concatenated per-level RoI pooling, ``[K, C * sum(n^2)]``."""
    return torch.cat(
        [roi_pool_reference(input, rois, (n, n), spatial_scale)[0].flatten(1) for n in levels], dim=1
    )


def nms_reference(
    boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, idxs: torch.Tensor | None = None
) -> torch.Tensor:
    """Greedy NMS in Python; with ``idxs``, only boxes of one category suppress each other."""
    order = torch.sort(scores, stable=True, descending=True).indices.tolist()
    # Arithmetic in the boxes' own precision; the IoU is compared with the threshold as a double.
    ftype = np.float64 if boxes.dtype == torch.float64 else np.float32
    b = boxes.detach().cpu().numpy().astype(ftype)
    zero = ftype(0)
    labels = idxs.tolist() if idxs is not None else [0] * len(order)
    suppressed = [False] * len(order)
    keep = []
    for oi, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        area_i = (b[i][2] - b[i][0]) * (b[i][3] - b[i][1])
        for j in order[oi + 1 :]:
            if suppressed[j] or labels[j] != labels[i]:
                continue
            w = max(zero, min(b[i][2], b[j][2]) - max(b[i][0], b[j][0]))
            h = max(zero, min(b[i][3], b[j][3]) - max(b[i][1], b[j][1]))
            inter = w * h
            area_j = (b[j][2] - b[j][0]) * (b[j][3] - b[j][1])
            union = area_i + area_j - inter
            if union > 0 and float(inter / union) > iou_threshold:
                suppressed[j] = True
    return torch.tensor(keep, dtype=torch.long)


def r2cnn_feature_levels_reference(
    features: torch.Tensor, num_levels: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Integrated map and levels, computed with whole-tensor PyTorch operations."""
    x = features.double() if features.dtype == torch.float64 else features.float()
    x = torch.where(torch.isfinite(x), x, torch.zeros_like(x))
    maxima = x.amax(dim=(2, 3), keepdim=True).clamp(min=0)
    weights = torch.where(
        maxima > 0, 1 / maxima.clamp(min=torch.finfo(x.dtype).tiny), torch.zeros_like(maxima)
    )
    integrated = (x * weights).sum(dim=1)
    top = integrated.flatten(1).amax(dim=1)[:, None, None]
    scaled = num_levels * integrated / (top + 1e-12)
    levels = torch.where(scaled > 0, scaled.floor().clamp(max=num_levels - 1), torch.zeros_like(scaled))
    return integrated, levels.to(torch.int32)


def r2cnn_level_boxes_reference(
    levels: torch.Tensor,
    num_levels: int,
    max_boxes_per_level: int,
    grouping: str = "flood",
    superlevel: bool = False,
) -> list[torch.Tensor]:
    """Per-level boxes in Python: flood-fill labelling of 8-connected groups or the original grouping.

    Same contract as :func:`detaccel.ops.r2cnn_level_boxes`; level ``l``'s set
    is the cells ``== l`` (or ``>= l`` with ``superlevel``) of every level present.
    """
    if grouping not in ("flood", "original"):
        raise ValueError(f"grouping: expected 'flood' or 'original', got {grouping!r}")
    results = []
    for level_map in levels.tolist():
        raster = [(y, x, value) for y, row in enumerate(level_map) for x, value in enumerate(row)]
        boxes = []
        for level in sorted({value for _, _, value in raster}):
            members = [(y, x) for y, x, value in raster if (value >= level if superlevel else value == level)]
            boxes.append(_cell_box(members))
            groups = _flood_groups(members) if grouping == "flood" else _original_groups(members)
            boxes.extend(groups[: max_boxes_per_level - 1])
        results.append(torch.tensor(boxes, dtype=torch.long).reshape(-1, 4))
    return results


def _cell_box(cells: list[tuple[int, int]]) -> list[int]:
    ys, xs = [c[0] for c in cells], [c[1] for c in cells]
    return [min(xs), min(ys), max(xs), max(ys)]


def _flood_groups(members: list[tuple[int, int]]) -> list[list[int]]:
    """Boxes of the 8-connected components of ``members`` (raster order), largest first."""
    unseen = set(members)
    groups: list[tuple[int, int, list[int]]] = []
    for order, seed in enumerate(members):
        if seed not in unseen:
            continue
        unseen.discard(seed)
        queue, cells = [seed], []
        while queue:
            y, x = queue.pop()
            cells.append((y, x))
            for neighbour in [(y + dy, x + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]:
                if neighbour in unseen:
                    unseen.discard(neighbour)
                    queue.append(neighbour)
        groups.append((len(cells), order, _cell_box(cells)))
    return [box for _, _, box in sorted(groups, key=lambda g: (-g[0], g[1]))]


def _original_groups(members: list[tuple[int, int]]) -> list[list[int]]:
    """Greedy groups of the original layer, in the order they were started.

    The first remaining cell seeds a box; one pass over the remaining cells in
    order takes every cell within one cell of the box and grows the box to it.
    """
    remaining = list(members)
    groups = []
    while remaining:
        (y, x), *rest = remaining
        x1, y1, x2, y2 = x, y, x, y
        remaining = []
        for y, x in rest:
            if x1 - 1 <= x <= x2 + 1 and y1 - 1 <= y <= y2 + 1:
                x1, y1, x2, y2 = min(x1, x), min(y1, y), max(x2, x), max(y2, y)
            else:
                remaining.append((y, x))
        groups.append([x1, y1, x2, y2])
    return groups


def r2cnn_contrast_scores_reference(
    integrated: np.ndarray,
    boxes: np.ndarray,
    field: tuple[float, float, float, float],
    ring: float = 0.5,
) -> np.ndarray:
    """Contrast scores of pixel boxes ``[K, 4]`` on a map ``[H, W]``, in numpy (whole-array operations)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    height, width = np.shape(integrated)
    stride_x, offset_x, stride_y, offset_y = field
    cells = (boxes - np.array([offset_x, offset_y] * 2)) / np.array([stride_x, stride_y] * 2)
    table = np.zeros((height + 1, width + 1), np.float64)
    table[1:, 1:] = np.asarray(integrated, np.float64).cumsum(0).cumsum(1)
    size = np.maximum(cells[:, 2:] - cells[:, :2] + 1, 1.0)
    grown = np.concatenate([cells[:, :2] - ring * size, cells[:, 2:] + ring * size], axis=1)
    rects = np.floor(np.concatenate([cells, grown]) + 0.5)
    np.clip(rects, 0, (width - 1, height - 1, width - 1, height - 1), out=rects)
    rects = rects.astype(np.int64)
    np.maximum(rects[:, 2:], rects[:, :2], out=rects[:, 2:])
    x1, y1, x2, y2 = rects.T
    sums = table[y2 + 1, x2 + 1] - table[y1, x2 + 1] - table[y2 + 1, x1] + table[y1, x1]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    count = len(boxes)
    inner_sum, outer_sum, inner_area, outer_area = sums[:count], sums[count:], areas[:count], areas[count:]
    ring_area = outer_area - inner_area
    ring_mean = np.where(ring_area > 0, (outer_sum - inner_sum) / np.maximum(ring_area, 1), 0.0)
    return (inner_sum / inner_area - ring_mean).astype(np.float32)
