"""A learned objectness map for R²-CNN: a small conv head on the map R²-CNN reads, trained with the detector.

With ``proposals.params.reduction: objectness`` R²-CNN integrates this head's
one-channel map instead of the backbone's channels: levels, groups and the
contrast ranking then read where the head sees objects. The head reads the
map detached (it never changes the detector's features) and learns, with a
binary cross-entropy, FCOS-style *centreness* targets: a cell whose centre lies
in a ground-truth box has target ``sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))``
(``l, r, t, b``: distances to the box's sides; 1 at the centre, 0 at the border;
the largest over boxes), 0 elsewhere. Nested levels of such a map separate
neighbouring objects that a plain inside/outside mask would merge.

With ``objectness_boxes: true`` the head also learns, per cell, the distances
from the cell's centre to the four sides of the object it lies in (FCOS-style:
the smallest ground-truth box containing the centre; ``log`` of the distance in
units of the map's stride; smooth L1 weighted by the centreness target; a branch of its own). R²-CNN
then adds, for every box it finds and every peak, the box these distances
describe at the box's centre cell: a learned local search that tightens boxes
the stride-wide cells leave loose.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from detaccel.proposals.receptive_field import ReceptiveField

# Channels of the head's output with box sides: objectness logits, then log (left, top, right, bottom).
SIDE_CHANNELS = 4
# Smooth-L1 transition of the side loss (on log distances).
SIDE_BETA = 0.1


def _branch_conv(in_channels: int, hidden: int) -> nn.Conv2d:
    """The 3x3 layer of a branch: ``in_channels -> hidden``."""
    layer = nn.Conv2d(in_channels, hidden, 3, padding=1)
    nn.init.normal_(layer.weight, std=0.01)
    nn.init.zeros_(layer.bias)
    return layer


class ObjectnessHead(nn.Module):
    """``conv3x3(C -> hidden) -> ReLU -> conv1x1(hidden -> 1)``: objectness logits of every map cell.

    ``boxes``: a second branch of the same form, ``conv3x3 -> ReLU -> conv1x1(hidden -> 4)``,
    predicts the cell's box sides (see the module docstring; its own layers, so that
    the regression never disturbs the objectness map); the output is then ``[N, 5, h, w]``.
    Without gradients (inference) the two branches run as one (one 3x3 convolution to
    ``2 * hidden`` channels, one block-diagonal 1x1): the same logits, the map read once.
    ``stage``: the backbone stage whose map the head reads (saved with its weights).
    """

    def __init__(self, in_channels: int, hidden: int = 64, boxes: bool = False, stage: str = "out") -> None:
        super().__init__()
        if in_channels < 1 or hidden < 1:
            raise ValueError(f"objectness head: channels must be positive, got {in_channels} and {hidden}")
        self.in_channels, self.hidden, self.stage = in_channels, hidden, stage
        self._fused: tuple[tuple, tuple] | None = None  # inference: both branches as one (_fused_branches)
        self.conv = _branch_conv(in_channels, hidden)
        self.logits = nn.Conv2d(hidden, 1, 1)
        self.side_conv = _branch_conv(in_channels, hidden) if boxes else None
        self.sides = nn.Conv2d(hidden, SIDE_CHANNELS, 1) if boxes else None
        for layer in (self.logits, self.sides):
            if layer is not None:
                nn.init.normal_(layer.weight, std=0.01)
                nn.init.zeros_(layer.bias)

    def get_extra_state(self) -> dict:
        return {"stage": self.stage}

    def set_extra_state(self, state: dict) -> None:
        self.stage = str(state["stage"])

    _graph: Any = None  # an exported graph holding the weights (use_graph)

    def use_graph(self, session: Any) -> None:
        """Run inference in ``session``, this head's exported ONNX graph (input ``map``, output
        ``logits``): from now on its own weights are unused and only inference runs."""
        self._graph = session

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, 1, h, w]`` (``[N, 5, h, w]`` with box sides) of ``feature_map`` ``[N, C, h, w]``
        (read detached)."""
        if feature_map.dim() != 4 or feature_map.shape[1] != self.in_channels:
            raise ValueError(
                f"objectness head: expected a map [N, {self.in_channels}, h, w], "
                f"got {tuple(feature_map.shape)}"
            )
        if self._graph is not None:
            if torch.is_grad_enabled() or feature_map.device.type != "cpu":
                raise RuntimeError("this objectness head runs its exported ONNX graph: inference on the CPU")
            (logits,) = self._graph.run(None, {"map": feature_map.float().contiguous().numpy()})
            return torch.from_numpy(logits)
        feature_map = feature_map.detach()
        if self.sides is not None and not torch.is_grad_enabled():
            conv, out = self._fused_branches()
            return functional.conv2d(functional.relu(functional.conv2d(feature_map, *conv, padding=1)), *out)
        logits = self.logits(functional.relu(self.conv(feature_map)))
        if self.sides is None:
            return logits
        return torch.cat((logits, self.sides(functional.relu(self.side_conv(feature_map)))), dim=1)

    def _fused_branches(self) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """Both full branches as one network, for inference: the two 3x3 convolutions stacked into one
        (``2 * hidden`` outputs), the two 1x1 layers into one block-diagonal 1x1 (zeros across
        branches), so the map is read once. ``((weight, bias) of the 3x3, (weight, bias) of the 1x1)``,
        rebuilt whenever a weight changes."""
        parts = (self.conv, self.side_conv, self.logits, self.sides)
        tensors = [t for part in parts for t in (part.weight, part.bias)]
        key = tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in tensors)
        if self._fused is None or self._fused[0] != key:
            conv_w, conv_b, side_w, side_b, logit_w, logit_b, sides_w, sides_b = (t.detach() for t in tensors)
            hidden = conv_w.shape[0]
            out_w = logit_w.new_zeros((1 + SIDE_CHANNELS, 2 * hidden, 1, 1))
            out_w[:1, :hidden] = logit_w
            out_w[1:, hidden:] = sides_w
            fused = (
                (torch.cat((conv_w, side_w)), torch.cat((conv_b, side_b))),
                (out_w, torch.cat((logit_b, sides_b))),
            )
            self._fused = (key, fused)
        return self._fused[1]


def _cell_sides(
    boxes: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Distances ``[G, h, w]`` from each cell centre to box ``g``'s (inclusive) left, top, right, bottom."""
    left = xs[None, None, :] - boxes[:, 0, None, None]
    top = ys[None, :, None] - boxes[:, 1, None, None]
    right = boxes[:, 2, None, None] - xs[None, None, :]
    bottom = boxes[:, 3, None, None] - ys[None, :, None]
    shape = (len(boxes), len(ys), len(xs))
    return left.expand(shape), top.expand(shape), right.expand(shape), bottom.expand(shape)


def _cell_centres(
    map_size: tuple[int, int], field: tuple[ReceptiveField, ReceptiveField], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    height, width = map_size
    fx, fy = field
    xs = fx.offset + fx.stride * torch.arange(width, dtype=torch.float32, device=device)
    ys = fy.offset + fy.stride * torch.arange(height, dtype=torch.float32, device=device)
    return xs, ys


def _centreness(left, top, right, bottom) -> tuple[torch.Tensor, torch.Tensor]:
    inside = (left >= 0) & (right >= 0) & (top >= 0) & (bottom >= 0)
    horizontal = torch.minimum(left, right) / torch.maximum(left, right).clamp(min=1e-6)
    vertical = torch.minimum(top, bottom) / torch.maximum(top, bottom).clamp(min=1e-6)
    score = (horizontal.clamp(min=0) * vertical.clamp(min=0)).sqrt()
    return torch.where(inside, score, torch.zeros_like(score)), inside


def centreness_targets(
    gt_boxes: Sequence[torch.Tensor],
    map_size: tuple[int, int],
    field: tuple[ReceptiveField, ReceptiveField],
) -> torch.Tensor:
    """Targets ``[N, 1, h, w]`` in ``[0, 1]`` for image ``i``'s inclusive pixel boxes ``gt_boxes[i]``.

    Cell ``(y, x)`` is centred at pixel ``(offset_y + y * stride_y, offset_x + x * stride_x)``.
    """
    device = gt_boxes[0].device if len(gt_boxes) else torch.device("cpu")
    xs, ys = _cell_centres(map_size, field, device)
    out = torch.zeros((len(gt_boxes), 1, *map_size), device=device)
    for i, boxes in enumerate(gt_boxes):
        boxes = boxes.reshape(-1, 4).float().to(device)
        if len(boxes):
            out[i, 0] = _centreness(*_cell_sides(boxes, xs, ys))[0].amax(dim=0)
    return out


def box_side_targets(
    gt_boxes: Sequence[torch.Tensor],
    map_size: tuple[int, int],
    field: tuple[ReceptiveField, ReceptiveField],
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(targets [N, 4, h, w], weights [N, 1, h, w])`` of the box-side regression.

    A cell whose centre lies in a ground-truth box regresses the smallest such
    box: ``log(d / stride)`` of the distances ``d`` from the centre to its left,
    top, right and bottom edges (the pixel edges: ``x1 - 0.5`` … ``x2 + 0.5``,
    so ``d >= 0.5``), weighted by that box's centreness; other cells weigh 0.
    """
    device = gt_boxes[0].device if len(gt_boxes) else torch.device("cpu")
    xs, ys = _cell_centres(map_size, field, device)
    strides = torch.tensor([field[0].stride, field[1].stride] * 2, device=device).view(4, 1, 1)
    targets = torch.zeros((len(gt_boxes), SIDE_CHANNELS, *map_size), device=device)
    weights = torch.zeros((len(gt_boxes), 1, *map_size), device=device)
    for i, boxes in enumerate(gt_boxes):
        boxes = boxes.reshape(-1, 4).float().to(device)
        if not len(boxes):
            continue
        sides = _cell_sides(boxes, xs, ys)
        centreness, inside = _centreness(*sides)
        area = ((boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)).view(-1, 1, 1)
        owner = torch.where(inside, area, torch.full_like(centreness, float("inf"))).argmin(dim=0)  # [h, w]
        chosen = [side.gather(0, owner[None])[0] + 0.5 for side in sides]
        targets[i] = torch.log(torch.stack(chosen).clamp(min=0.5) / strides)
        weights[i, 0] = centreness.gather(0, owner[None])[0]
    return targets, weights


def objectness_losses(
    logits: torch.Tensor,
    gt_boxes: Sequence[torch.Tensor],
    field: tuple[ReceptiveField, ReceptiveField],
) -> dict[str, torch.Tensor]:
    """``{"loss_objectness"}``: mean binary cross-entropy of ``logits[:, :1]`` against
    :func:`centreness_targets`; with box sides (``[N, 5, h, w]``) also ``"loss_sides"``: their smooth L1
    against :func:`box_side_targets` (mean of the four sides, weighted by centreness, normalised by
    the weights' sum)."""
    if logits.shape[0] != len(gt_boxes):
        raise ValueError(f"objectness loss: {logits.shape[0]} maps but boxes of {len(gt_boxes)} images")
    if logits.shape[1] not in (1, 1 + SIDE_CHANNELS):
        raise ValueError(f"objectness loss: expected 1 or 5 channels, got {logits.shape[1]}")
    map_size = tuple(logits.shape[-2:])
    targets = centreness_targets(gt_boxes, map_size, field).to(logits.device, logits.dtype)
    losses = {"loss_objectness": functional.binary_cross_entropy_with_logits(logits[:, :1], targets)}
    if logits.shape[1] == 1:
        return losses
    sides, weights = (t.to(logits.device, logits.dtype) for t in box_side_targets(gt_boxes, map_size, field))
    per_cell = functional.smooth_l1_loss(logits[:, 1:], sides, reduction="none", beta=SIDE_BETA).mean(1, True)
    losses["loss_sides"] = (per_cell * weights).sum() / weights.sum().clamp(min=1.0)
    return losses
