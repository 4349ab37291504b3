"""The detector's typical object shapes: what ``shapes: auto`` learned from the training boxes."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


class BoxShapes(nn.Module):
    """``(width, height)`` pairs in pixels of a network input whose shorter side was ``scale``.

    Found from the training boxes when training starts (``proposals.params.shapes:
    auto``, :func:`~detaccel.proposals.box_shapes.resolve_shapes`) and saved in the
    detector's state dict, so that R²-CNN with ``shapes: auto`` reads them whatever
    was in the proposal slot before. ``sizes`` is ``None`` when the detector has none.
    """

    def __init__(self, sizes: Sequence[Sequence[float]] | None = None, scale: int | None = None) -> None:
        super().__init__()
        self.set(sizes, scale)

    def set(self, sizes: Sequence[Sequence[float]] | None, scale: int | None) -> None:
        self.sizes = None if sizes is None else [[float(w), float(h)] for w, h in sizes]
        self.scale = None if scale is None else int(scale)

    def get_extra_state(self) -> dict:
        return {"sizes": self.sizes, "scale": self.scale}

    def set_extra_state(self, state: dict) -> None:
        self.set(state.get("sizes"), state.get("scale"))

    def extra_repr(self) -> str:
        return f"sizes={self.sizes}, scale={self.scale}"
