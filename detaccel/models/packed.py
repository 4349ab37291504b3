"""Fully connected layers stored compactly: magnitude-pruned (a bit mask and the kept weights) and/or int8.

:class:`PackedLinear` is what automatic compression (``detaccel compress --auto``)
puts in place of a ``Linear``. Its state holds only what the checkpoint must
keep — the bit mask of kept weights (when pruned), the kept weights (float32, or
int8 with one float32 scale per output row), and the bias — so that pruning and
int8 shrink the saved file. Inference unpacks once into a dense float weight, or
on the CPU for int8 into PyTorch's prepacked dynamically quantised linear
(``quantized::linear_dynamic``: int8 weights, activations quantised per batch).
Pruning zeroes weights inside a dense product: it reduces bytes, not CPU time.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

_BITS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)


def _pack_bits(keep: torch.Tensor) -> torch.Tensor:
    """A bool tensor as bytes, most significant bit first (``numpy.packbits`` order)."""
    flat = keep.flatten().to(torch.uint8)
    padded = torch.zeros(math.ceil(flat.numel() / 8) * 8, dtype=torch.uint8)
    padded[: flat.numel()] = flat
    return (padded.view(-1, 8) * _BITS).sum(dim=1).to(torch.uint8)


def _unpack_bits(mask: torch.Tensor, count: int) -> torch.Tensor:
    bits = (mask.cpu()[:, None] & _BITS) != 0
    return bits.flatten()[:count]


class PackedLinear(nn.Module):
    """``y = x Wᵀ + b`` with ``W`` kept pruned (``nnz`` of its weights) and/or as int8.

    Args:
        in_features, out_features: the layer's shape.
        nnz: number of weights kept (``None``: dense, no mask).
        int8: weights stored as int8 with one scale per output row (symmetric).
    """

    def __init__(
        self, in_features: int, out_features: int, nnz: int | None = None, int8: bool = False
    ) -> None:
        super().__init__()
        size = in_features * out_features
        if nnz is not None and not 0 <= nnz <= size:
            raise ValueError(
                f"nnz must be in [0, {size}] for a {in_features}->{out_features} layer, got {nnz}"
            )
        self.in_features, self.out_features = in_features, out_features
        self.nnz, self.int8 = nnz, bool(int8)
        count = size if nnz is None else nnz
        self.register_buffer("values", torch.zeros(count, dtype=torch.int8 if int8 else torch.float32))
        self.register_buffer("bias", torch.zeros(out_features))
        if nnz is not None:
            self.register_buffer("mask", torch.zeros(math.ceil(size / 8), dtype=torch.uint8))
        if int8:
            self.register_buffer("scale", torch.ones(out_features))
        self._unpacked: tuple[str, Any] | None = None

    @classmethod
    def from_linear(cls, layer: nn.Linear, sparsity: float = 0.0, int8: bool = False) -> PackedLinear:
        """``layer`` with its ``sparsity`` fraction of smallest-magnitude weights removed, optionally int8."""
        if not 0.0 <= sparsity < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
        weight = layer.weight.detach().float().cpu()
        size = weight.numel()
        keep_count = size - round(sparsity * size)
        pruned = keep_count < size
        if pruned:
            keep = torch.zeros(size, dtype=torch.bool)
            keep[torch.topk(weight.abs().flatten(), keep_count, sorted=False).indices] = True
            keep = keep.view_as(weight)
        else:
            keep = torch.ones_like(weight, dtype=torch.bool)
        out = cls(layer.in_features, layer.out_features, keep_count if pruned else None, int8)
        with torch.no_grad():
            if int8:
                kept = weight * keep
                scale = kept.abs().amax(dim=1) / 127.0
                scale = torch.where(scale > 0, scale, torch.ones_like(scale))
                quantised = torch.round(kept / scale[:, None]).clamp(-127, 127).to(torch.int8)
                out.scale.copy_(scale)
                out.values.copy_(quantised[keep] if pruned else quantised.flatten())
            else:
                out.values.copy_(weight[keep] if pruned else weight.flatten())
            if pruned:
                out.mask.copy_(_pack_bits(keep))
            if layer.bias is not None:
                out.bias.copy_(layer.bias.detach().float().cpu())
        return out.to(layer.weight.device)

    def _stored_weight(self) -> torch.Tensor:
        """The weight ``[out, in]`` in its stored dtype (int8 unscaled), pruned entries zero."""
        if self.nnz is None:
            return self.values.view(self.out_features, self.in_features)
        keep = _unpack_bits(self.mask, self.in_features * self.out_features).to(self.values.device)
        weight = self.values.new_zeros(self.in_features * self.out_features)
        weight[keep] = self.values
        return weight.view(self.out_features, self.in_features)

    def dense_weight(self) -> torch.Tensor:
        """The weight ``[out, in]`` as float32 (pruned entries zero, int8 dequantised)."""
        weight = self._stored_weight().float()
        return weight * self.scale[:, None] if self.int8 else weight

    def _prepare(self, device: torch.device) -> tuple[str, Any]:
        if self._unpacked is not None and self._unpacked[2] == device:
            return self._unpacked[:2]
        if self.int8 and device.type == "cpu":
            integers = self._stored_weight().cpu()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # quantised-tensor creation deprecation notice
                quantised = torch._make_per_channel_quantized_tensor(
                    integers, self.scale.double(), torch.zeros(self.out_features, dtype=torch.long), 0
                )
                prepared: tuple[str, Any] = ("int8", torch.ops.quantized.linear_prepack(quantised, self.bias))
        else:
            prepared = ("float", self.dense_weight().to(device))
        self._unpacked = (*prepared, device)
        return prepared

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kind, weight = self._prepare(x.device)
        if kind == "int8":
            # Activations in 7 bits on the x86 engines: their AVX2 kernels (no VNNI) sum u8 x s8 pairs in
            # saturating 16-bit lanes, which overflow with 8-bit activations (as PyTorch's own dynamic
            # quantisation does there; qnnpack has no such limit).
            reduce_range = torch.backends.quantized.engine != "qnnpack"
            out = torch.ops.quantized.linear_dynamic(x.float().contiguous(), weight, reduce_range)
            return out.to(x.dtype)
        return nn.functional.linear(x, weight.to(x.dtype), self.bias.to(x.dtype))

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        self._unpacked = None
        super()._load_from_state_dict(*args, **kwargs)

    def _apply(self, fn, recurse=True):
        self._unpacked = None
        return super()._apply(fn, recurse)

    def extra_repr(self) -> str:
        kept = (
            "dense" if self.nnz is None else f"{self.nnz / (self.in_features * self.out_features):.3f} kept"
        )
        return f"in_features={self.in_features}, out_features={self.out_features}, {kept}, int8={self.int8}"

    def spec(self) -> dict[str, Any]:
        """What rebuilds this layer's shape before its state is loaded (``HeadConfig.packed``)."""
        return {"nnz": self.nnz, "int8": self.int8}


def install_packed_layers(model: nn.Module, packed: Mapping[str, Mapping[str, Any]]) -> None:
    """Replace each ``Linear`` at the module paths of ``packed`` by an empty :class:`PackedLinear` of
    that spec (``{"nnz": int | None, "int8": bool}``), ready for a compressed checkpoint's state."""
    for path, spec in packed.items():
        parent_path, _, name = path.rpartition(".")
        try:
            parent = model.get_submodule(parent_path) if parent_path else model
            layer = getattr(parent, name)
        except AttributeError:
            raise ValueError(f"head.packed: the model has no layer {path!r}") from None
        if not isinstance(layer, nn.Linear | PackedLinear):
            raise ValueError(
                f"head.packed: {path!r} is a {type(layer).__name__}, not a fully connected layer"
            )
        unknown = set(spec) - {"nnz", "int8"}
        if unknown:
            raise ValueError(f"head.packed: {path!r}: unknown keys {sorted(unknown)} (expected nnz, int8)")
        nnz = spec.get("nnz")
        setattr(
            parent,
            name,
            PackedLinear(
                layer.in_features,
                layer.out_features,
                None if nnz is None else int(nnz),
                bool(spec.get("int8")),
            ),
        )
