"""Compression candidates of a detector's fully connected layers and applying them.

A candidate gives each layer of the head (``fc6``, ``fc7``) and the predictor
(``cls_score``, ``bbox_pred``) an optional truncated-SVD rank (head layers
only), a magnitude-pruning sparsity, and whether its weights are int8.
"""

from __future__ import annotations

import copy
import io
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from detaccel.models.detector import RegionDetector
from detaccel.models.packed import PackedLinear
from detaccel.models.svd import TruncatedSVDLinear, factorize_linear

HEAD_LAYERS = ("fc6", "fc7")
PREDICTOR_LAYERS = ("cls_score", "bbox_pred")


@dataclass(frozen=True)
class LayerChoice:
    """How one fully connected layer is compressed: SVD rank (``None``: not factorised), sparsity, int8."""

    rank: int | None = None
    sparsity: float = 0.0
    int8: bool = False

    @property
    def changes(self) -> bool:
        return self.rank is not None or self.sparsity > 0 or self.int8


Candidate = dict[str, LayerChoice]


def layer_path(name: str) -> str:
    """The module path of a compressible layer in :class:`RegionDetector`."""
    return f"head.{name}" if name in HEAD_LAYERS else f"predictor.{name}"


def compressible_layers(model: RegionDetector) -> dict[str, nn.Linear]:
    """The plain (not yet compressed) fully connected layers a candidate may change, by name."""
    out = {}
    for name in (*HEAD_LAYERS, *PREDICTOR_LAYERS):
        layer = model.get_submodule(layer_path(name))
        if type(layer) is nn.Linear:
            out[name] = layer
    return out


def candidate_to_dict(candidate: Candidate) -> dict[str, dict[str, Any]]:
    return {name: asdict(choice) for name, choice in candidate.items()}


def candidate_from_dict(values: dict[str, dict[str, Any]]) -> Candidate:
    return {name: LayerChoice(**choice) for name, choice in values.items()}


def _pack(parent: nn.Module, name: str, choice: LayerChoice, path: str, packed: dict[str, dict]) -> None:
    if choice.sparsity <= 0 and not choice.int8:
        return
    layer = PackedLinear.from_linear(getattr(parent, name), choice.sparsity, choice.int8)
    setattr(parent, name, layer)
    packed[path] = layer.spec()


def _prune_trainable(parent: nn.Module, name: str, choice: LayerChoice, path: str, packed: dict) -> None:
    """Zero the ``sparsity`` smallest weights of a ``Linear`` and keep them zero through training
    (a gradient mask; SGD's weight decay and momentum of a zero weight with zero gradient stay zero)."""
    if choice.sparsity <= 0:
        return
    layer: nn.Linear = getattr(parent, name)
    keep = (PackedLinear.from_linear(layer, choice.sparsity).dense_weight() != 0).to(layer.weight.device)
    with torch.no_grad():
        layer.weight.mul_(keep)
    layer.weight.register_hook(lambda grad: grad * keep)


def pack_trained(model: RegionDetector, candidate: Candidate) -> dict[str, dict]:
    """Pack, in place, the layers of a :func:`compressed_copy` made with ``pack=False`` (after fine-tuning):
    the same magnitude masks (the pruned weights are the zeros) and int8; returns ``head.packed``."""
    packed: dict[str, dict] = {}
    for name, choice in candidate.items():
        parent_path, _, attribute = layer_path(name).rpartition(".")
        parent = model.get_submodule(parent_path)
        if choice.rank is not None:
            factorised = getattr(parent, attribute)
            for part in ("reduce", "expand"):
                _pack(factorised, part, choice, f"{layer_path(name)}.{part}", packed)
        else:
            _pack(parent, attribute, choice, layer_path(name), packed)
    return packed


def compressed_copy(
    model: RegionDetector, candidate: Candidate, pack: bool = True
) -> tuple[RegionDetector, dict[str, int], dict[str, dict]]:
    """A copy of ``model`` (sharing its backbone, RoI features and proposal generator) with ``candidate``
    applied, and the ``head.svd_ranks`` and ``head.packed`` entries that rebuild it from a config.

    With ``pack=False`` the layers stay trainable ``Linear`` layers (pruned weights held at zero,
    float32) for fine-tuning; :func:`pack_trained` then packs them."""
    apply = _pack if pack else _prune_trainable
    shared = (model.backbone, model.roi_features, model.proposal_generator)
    memo = {id(module): module for module in shared}
    out = copy.deepcopy(model, memo)
    available = compressible_layers(out)
    ranks: dict[str, int] = {}
    packed: dict[str, dict] = {}
    for name, choice in candidate.items():
        if not choice.changes:
            continue
        if name not in available:
            raise ValueError(f"layer {name!r} cannot be compressed (layers: {', '.join(available)})")
        parent_path, _, attribute = layer_path(name).rpartition(".")
        parent = out.get_submodule(parent_path)
        if choice.rank is not None:
            if name not in HEAD_LAYERS:
                raise ValueError(f"truncated SVD applies to {', '.join(HEAD_LAYERS)}, not {name!r}")
            factorised: TruncatedSVDLinear = factorize_linear(available[name], choice.rank)
            setattr(parent, attribute, factorised)
            ranks[name] = choice.rank
            for part in ("reduce", "expand"):
                apply(factorised, part, choice, f"{layer_path(name)}.{part}", packed)
        else:
            apply(parent, attribute, choice, layer_path(name), packed)
    out.eval()
    return out, ranks, packed


def head_bytes(model: RegionDetector) -> int:
    """Bytes the head and predictor take in a saved checkpoint (their state, as ``torch.save`` writes it)."""
    state = {f"head.{k}": v for k, v in model.head.state_dict().items()}
    state.update({f"predictor.{k}": v for k, v in model.predictor.state_dict().items()})
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.tell()
