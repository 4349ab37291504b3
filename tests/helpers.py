"""Input generators shared by the operator tests."""

from __future__ import annotations

import torch


def random_rois(
    num_rois: int,
    image_size: tuple[int, int],
    batch_size: int = 1,
    min_size: float = 16,
    max_size: float = 300,
    dtype: torch.dtype = torch.float32,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """[K, 5] RoIs with sides in [min_size, max_size] pixels placed anywhere in the image."""
    height, width = image_size
    wh = torch.rand(num_rois, 2, generator=generator, dtype=torch.float64) * (max_size - min_size) + min_size
    corner = torch.rand(num_rois, 2, generator=generator, dtype=torch.float64) * torch.tensor(
        [width - min_size, height - min_size], dtype=torch.float64
    )
    index = torch.randint(0, batch_size, (num_rois, 1), generator=generator).to(torch.float64)
    return torch.cat([index, corner, corner + wh], dim=1).to(dtype)


def random_boxes(num: int, size: float = 100.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """[N, 4] boxes with positive width and height inside [0, size]^2."""
    xy = torch.rand(num, 2, generator=generator) * size
    wh = torch.rand(num, 2, generator=generator) * size / 2 + 1
    return torch.cat([xy, xy + wh], dim=1)
