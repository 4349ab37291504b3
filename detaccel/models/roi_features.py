"""RoI feature extractors: one interface for R-CNN's warped regions, SPPnet's pyramid and Fast R-CNN's pool.

An extractor is called as ``extractor(images, rois, backbone)`` with the
normalised, padded image batch ``[B, 3, H, W]``, RoIs ``[K, 5]`` rows
``(batch_index, x1, y1, x2, y2)`` in inclusive pixels of those images, and
the backbone; it returns one vector per RoI, ``[K, output_dim]``. Its two
halves, ``image_features(images, backbone)`` (what is shared by all RoIs of an
image) and ``pool(shared, rois, backbone)``, can be called apart; both mark
their ``backbone`` and ``roi_features`` profiling stages.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from detaccel.config.schema import RoIFeaturesConfig
from detaccel.ops import roi_pool, spp_output_dim, spp_pool
from detaccel.profiling import stage


def warp_regions(
    images: torch.Tensor, rois: torch.Tensor, size: int, context_padding: int = 0
) -> torch.Tensor:
    """Crop each RoI with context and warp it to ``size x size`` (R-CNN's region warping).

    The box is enlarged about its centre so that, once warped, it fills the
    central ``size - 2 * context_padding`` pixels and the rest is the image
    around it; the crop ignores aspect ratio. Parts outside the image read as
    0 (the mean, after normalisation). Bilinear sampling; ``[K, C, size, size]``.
    """
    if rois.numel() == 0:
        return images.new_zeros((0, images.shape[1], size, size))
    _, channels, height, width = images.shape
    count = rois.shape[0]
    rois = rois.to(images.dtype)
    enlarge = size / (size - 2 * context_padding)
    x1, y1, x2, y2 = rois[:, 1], rois[:, 2], rois[:, 3], rois[:, 4]
    # Inclusive pixels: the box covers pixel edges [x1, x2 + 1).
    box_w = (x2 - x1 + 1).clamp(min=1) * enlarge
    box_h = (y2 - y1 + 1).clamp(min=1) * enlarge
    centre_x = (x1 + x2 + 1) / 2
    centre_y = (y1 + y2 + 1) / 2
    steps = (torch.arange(size, dtype=images.dtype, device=images.device) + 0.5) / size
    xs = centre_x[:, None] + (steps[None] - 0.5) * box_w[:, None]
    ys = centre_y[:, None] + (steps[None] - 0.5) * box_h[:, None]
    grid_x = (2 * xs / width - 1)[:, None, :].expand(count, size, size)
    grid_y = (2 * ys / height - 1)[:, :, None].expand(count, size, size)
    grid = torch.stack((grid_x, grid_y), dim=-1)
    out = images.new_empty((count, channels, size, size))
    batch_index = rois[:, 0].long()
    for b in torch.unique(batch_index).tolist():
        selected = torch.nonzero(batch_index == b).flatten()
        tiles = grid[selected].reshape(1, len(selected) * size, size, 2)
        warped = F.grid_sample(
            images[b : b + 1], tiles, mode="bilinear", padding_mode="zeros", align_corners=False
        )
        out[selected] = warped.view(channels, len(selected), size, size).transpose(0, 1)
    return out


class SharedMapFeatures(nn.Module):
    """Base of the extractors that run the backbone once per image and pool RoIs on its map.

    ``forward(images, rois, backbone)`` is ``pool(image_features(images, backbone), rois, backbone)``;
    the two halves are separate so that a caller can reuse the map (for example
    to derive R²-CNN proposals from it) and time each stage.
    """

    per_region = False
    _graph: Any = None  # the exported pooling graph (use_graph)

    def image_features(self, images: torch.Tensor, backbone: nn.Module) -> torch.Tensor:
        with stage("backbone"):
            return backbone(images)

    def forward(self, images: torch.Tensor, rois: torch.Tensor, backbone: nn.Module) -> torch.Tensor:
        return self.pool(self.image_features(images, backbone), rois, backbone)

    def use_graph(self, session: Any) -> None:
        """Pool in ``session``, this extractor's exported ONNX graph (inputs ``map`` and ``rois``,
        output ``pooled``; the standard ONNX pooling operators)."""
        self._graph = session

    def pool(self, features: torch.Tensor, rois: torch.Tensor, backbone: nn.Module) -> torch.Tensor:
        """``[K, output_dim]`` features of RoIs ``[K, 5]`` (inclusive pixels of the images) on the map."""
        with stage("roi_features"):
            if self._graph is None:
                return self._pool(features, rois, torch.onnx.is_in_onnx_export())
            feeds = {"map": features.float().contiguous().numpy(), "rois": rois.float().contiguous().numpy()}
            return torch.from_numpy(self._graph.run(None, feeds)[0])

    def _pool(self, features: torch.Tensor, rois: torch.Tensor, exporting: bool) -> torch.Tensor:
        """The pooling itself; ``exporting``: in the operators the ONNX exporter knows (torchvision's,
        which the project's operators equal)."""
        raise NotImplementedError


class RoIPoolFeatures(SharedMapFeatures):
    """Fast R-CNN: one conv pass per image, RoI max pooling to ``output_size`` on the last map."""

    def __init__(self, channels: int, stride: int, output_size: int) -> None:
        super().__init__()
        self.output_size, self.spatial_scale = output_size, 1.0 / stride
        self.output_dim = channels * output_size * output_size

    def _pool(self, features: torch.Tensor, rois: torch.Tensor, exporting: bool) -> torch.Tensor:
        pool = torchvision.ops.roi_pool if exporting else roi_pool
        return pool(features, rois, self.output_size, self.spatial_scale).flatten(1)


class RoIAlignFeatures(RoIPoolFeatures):
    """Fast R-CNN with RoIAlign (Mask R-CNN's pooling): bilinear samples, no rounding of the RoI to cells.

    Each ``output_size`` x ``output_size`` bin averages ``sampling_ratio`` squared bilinear samples
    (torchvision's ``roi_align``, half-pixel aligned); the inclusive pixel boxes are read as the
    continuous boxes ``[x1, x2 + 1)``. For objects a few cells wide, where max pooling's rounding
    moves a box by up to half a cell.
    """

    def __init__(self, channels: int, stride: int, output_size: int, sampling_ratio: int = 2) -> None:
        super().__init__(channels, stride, output_size)
        self.sampling_ratio = sampling_ratio

    def _pool(self, features: torch.Tensor, rois: torch.Tensor, exporting: bool) -> torch.Tensor:
        rois = rois.to(features.dtype)
        continuous = torch.cat((rois[:, :3], rois[:, 3:] + 1.0), dim=1)
        pooled = torchvision.ops.roi_align(
            features, continuous, self.output_size, self.spatial_scale, self.sampling_ratio, aligned=True
        )
        return pooled.flatten(1)


class SPPFeatures(SharedMapFeatures):
    """SPPnet: one conv pass per image, spatial pyramid pooling of each RoI on the last map."""

    def __init__(self, channels: int, stride: int, levels: list[int]) -> None:
        super().__init__()
        self.levels, self.spatial_scale = tuple(levels), 1.0 / stride
        self.output_dim = spp_output_dim(channels, self.levels)

    def _pool(self, features: torch.Tensor, rois: torch.Tensor, exporting: bool) -> torch.Tensor:
        if not exporting:
            return spp_pool(features, rois, self.levels, self.spatial_scale)
        levels = [
            torchvision.ops.roi_pool(features, rois, n, self.spatial_scale).flatten(1) for n in self.levels
        ]
        return torch.cat(levels, dim=1)


class WarpFeatures(nn.Module):
    """R-CNN: warp each region (with context) to a fixed size and run the CNN on it, in batches.

    The last conv map of each warped region is max-pooled to ``output_size``
    (the role of pool5) and flattened.
    """

    per_region = True

    def __init__(
        self, channels: int, warp_size: int, context_padding: int, output_size: int, batch_size: int
    ):
        super().__init__()
        self.warp_size, self.context_padding = warp_size, context_padding
        self.output_size, self.batch_size = output_size, batch_size
        self.output_dim = channels * output_size * output_size

    def image_features(self, images: torch.Tensor, backbone: nn.Module) -> torch.Tensor:
        """R-CNN shares nothing between regions: the "map" is the image itself."""
        return images

    def pool(self, images: torch.Tensor, rois: torch.Tensor, backbone: nn.Module) -> torch.Tensor:
        if len(rois) == 0:
            return images.new_zeros((0, self.output_dim))
        outputs = []
        for chunk in rois.split(self.batch_size):
            with stage("roi_features"):
                crops = warp_regions(images, chunk, self.warp_size, self.context_padding)
            with stage("backbone"):
                maps = backbone(crops)
            with stage("roi_features"):
                outputs.append(F.adaptive_max_pool2d(maps, self.output_size).flatten(1))
        return torch.cat(outputs)

    def forward(self, images: torch.Tensor, rois: torch.Tensor, backbone: nn.Module) -> torch.Tensor:
        return self.pool(images, rois, backbone)


def build_roi_features(kind: str, config: RoIFeaturesConfig, channels: int, stride: int) -> nn.Module:
    """The extractor of type ``kind`` (``warp``, ``spp``, ``roi_pool`` or ``roi_align``)."""
    if kind == "roi_pool":
        return RoIPoolFeatures(channels, stride, config.output_size)
    if kind == "roi_align":
        return RoIAlignFeatures(channels, stride, config.output_size)
    if kind == "spp":
        return SPPFeatures(channels, stride, config.spp_levels)
    if kind == "warp":
        return WarpFeatures(
            channels, config.warp_size, config.context_padding, config.output_size, config.warp_batch_size
        )
    raise ValueError(f"unknown RoI feature type {kind!r}")
