"""Named class lists and how a dataset's class list is chosen."""

from __future__ import annotations

from collections.abc import Sequence

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)

SYNTHETIC_CLASSES: tuple[str, ...] = ("disc", "square", "triangle", "star", "ring", "cross")

NAMED_CLASS_LISTS: dict[str, tuple[str, ...]] = {"voc": VOC_CLASSES, "synthetic": SYNTHETIC_CLASSES}

# A class list: a list of names, a key of NAMED_CLASS_LISTS, "discover" (the sorted
# names found in the dataset's annotations) or "auto" (a named list where the dataset
# is known to use one, else "discover"; see detaccel.data.voc.load_voc).
ClassSpec = Sequence[str] | str

DISCOVER = "discover"
AUTO = "auto"


def resolve_class_names(spec: ClassSpec) -> tuple[str, ...] | None:
    """The class names a spec stands for; ``None`` for ``"discover"`` and ``"auto"`` (the loader decides).

    A string is a named list (``"voc"``, ``"synthetic"``), ``"discover"``,
    ``"auto"``, or comma-separated names (``"cat,dog"``).
    """
    if isinstance(spec, str):
        if spec in (DISCOVER, AUTO):
            return None
        if spec in NAMED_CLASS_LISTS:
            return NAMED_CLASS_LISTS[spec]
        spec = [name for name in spec.split(",")]
    names = tuple(str(name).strip() for name in spec)
    if not names or any(not name for name in names):
        raise ValueError(f"invalid class list {spec!r}: expected non-empty class names")
    if len(set(names)) != len(names):
        raise ValueError(f"invalid class list {spec!r}: duplicate class names")
    return names
