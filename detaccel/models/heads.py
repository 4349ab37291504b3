"""The fully connected head shared by all families: fc6 and fc7, each optionally truncated-SVD factorised."""

from __future__ import annotations

import torch
from torch import nn

from detaccel.models.svd import TruncatedSVDLinear


class FCHead(nn.Module):
    """``fc6 -> ReLU -> dropout -> fc7 -> ReLU -> dropout``.

    ``svd_ranks`` (``{"fc6": k}``) builds the named layers in factorised form,
    so that a compressed checkpoint loads into the same architecture.
    """

    LAYERS = ("fc6", "fc7")

    def __init__(
        self, in_dim: int, fc_dims: list[int], dropout: float = 0.5, svd_ranks: dict[str, int] | None = None
    ) -> None:
        super().__init__()
        svd_ranks = dict(svd_ranks or {})
        dims = [in_dim, *fc_dims]
        for name, d_in, d_out in zip(self.LAYERS, dims[:-1], dims[1:], strict=True):
            layer = (
                TruncatedSVDLinear(d_in, d_out, svd_ranks[name])
                if name in svd_ranks
                else nn.Linear(d_in, d_out)
            )
            setattr(self, name, layer)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.out_dim = dims[-1]
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.01 if module.in_features < 4096 else 0.005)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(torch.relu(self.fc6(x)))
        return self.dropout(torch.relu(self.fc7(x)))
