"""Truncated SVD of fully connected layers (Fast R-CNN, section 3.1).

``y = W x + b`` with ``W ≈ U_k Σ_k V_kᵀ`` becomes ``Linear(in -> k, no bias)``
with weight ``Σ_k V_kᵀ`` followed by ``Linear(k -> out)`` with weight ``U_k``
and the original bias: ``k * (in + out)`` multiply-adds instead of ``in * out``.
"""

from __future__ import annotations

import torch
from torch import nn


class TruncatedSVDLinear(nn.Module):
    """A rank-``k`` factorisation of a ``Linear``: ``expand(reduce(x))``."""

    def __init__(self, in_features: int, out_features: int, rank: int) -> None:
        super().__init__()
        if not 0 < rank <= min(in_features, out_features):
            raise ValueError(
                f"rank must be in [1, {min(in_features, out_features)}] for a {in_features}->{out_features} "
                f"layer, got {rank}"
            )
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.reduce = nn.Linear(in_features, rank, bias=False)
        self.expand = nn.Linear(rank, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.expand(self.reduce(x))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"


def linear_cost(layer: nn.Module) -> tuple[int, int]:
    """``(parameters, multiply-adds per input vector)`` of a ``Linear`` or its factorisation."""
    if isinstance(layer, TruncatedSVDLinear):
        reduce, expand = linear_cost(layer.reduce), linear_cost(layer.expand)
        return reduce[0] + expand[0], reduce[1] + expand[1]
    if isinstance(layer, nn.Linear):
        params = layer.weight.numel() + (layer.bias.numel() if layer.bias is not None else 0)
        return params, layer.in_features * layer.out_features
    raise TypeError(f"not a fully connected layer: {type(layer).__name__}")


def singular_values(layer: nn.Linear) -> torch.Tensor:
    """Singular values of the layer's weight, decreasing."""
    return torch.linalg.svdvals(layer.weight.detach().double()).float()


def rank_for_energy(values: torch.Tensor, energy: float) -> int:
    """The smallest ``k`` whose top singular values keep ``energy`` of ``sum(σ²)``."""
    if not 0 < energy <= 1:
        raise ValueError(f"energy must be in (0, 1], got {energy}")
    squares = values.double() ** 2
    total = float(squares.sum())
    if total == 0:
        return 1
    kept = torch.cumsum(squares, 0) / total
    return int(torch.searchsorted(kept, torch.tensor(energy, dtype=kept.dtype) - 1e-12).item()) + 1


def factorize_linear(layer: nn.Linear, rank: int) -> TruncatedSVDLinear:
    """The rank-``rank`` truncated SVD of ``layer`` as two layers (computed in float64)."""
    weight = layer.weight.detach().double()
    u, s, vh = torch.linalg.svd(weight, full_matrices=False)
    out = TruncatedSVDLinear(layer.in_features, layer.out_features, rank)
    with torch.no_grad():
        out.reduce.weight.copy_((s[:rank, None] * vh[:rank]).to(layer.weight.dtype))
        out.expand.weight.copy_(u[:, :rank].to(layer.weight.dtype))
        if layer.bias is not None:
            out.expand.bias.copy_(layer.bias.detach())
        else:
            out.expand.bias.zero_()
    return out.to(layer.weight.device)


def compress_head(
    head: nn.Module,
    ranks: dict[str, int] | None = None,
    energy: float | None = None,
    layers: list[str] | tuple[str, ...] = ("fc6", "fc7"),
) -> list[dict[str, object]]:
    """Factorise ``head``'s named layers in place, by given ranks or by retained energy.

    Returns one row per layer: name, shape, rank, retained energy, parameters
    and multiply-adds per RoI before and after.
    """
    if (ranks is None) == (energy is None):
        raise ValueError("give either ranks or energy")
    chosen = dict(ranks) if ranks is not None else dict.fromkeys(layers, 0)
    report = []
    for name in chosen:
        layer = getattr(head, name, None)
        if isinstance(layer, TruncatedSVDLinear):
            raise ValueError(f"layer {name!r} is already factorised (rank {layer.rank})")
        if not isinstance(layer, nn.Linear):
            known = [n for n, m in head.named_children() if isinstance(m, nn.Linear | TruncatedSVDLinear)]
            raise ValueError(f"no fully connected layer {name!r} (layers: {', '.join(known)})")
        values = singular_values(layer)
        rank = chosen[name] if ranks is not None else rank_for_energy(values, energy)
        limit = min(layer.in_features, layer.out_features)
        if not 0 < rank <= limit:
            raise ValueError(f"rank of {name!r} must be in [1, {limit}], got {rank}")
        before = linear_cost(layer)
        factorised = factorize_linear(layer, rank)
        setattr(head, name, factorised)
        after = linear_cost(factorised)
        squares = values.double() ** 2
        report.append(
            {
                "layer": name,
                "in_features": layer.in_features,
                "out_features": layer.out_features,
                "rank": rank,
                "energy": float(squares[:rank].sum() / squares.sum()) if float(squares.sum()) else 1.0,
                "params_before": before[0],
                "params_after": after[0],
                "macs_before": before[1],
                "macs_after": after[1],
            }
        )
    return report
