"""Dataset splits: reproducible stratified splitting, and checks that splits do not share images.

A split is a list of image ids (a VOC ``<split>.txt``). Splits meant to be
disjoint (``train``, ``val``, ``test``) must not share images, or evaluation
measures images the model was trained on. A split whose name joins the names of
other splits (``trainval`` = ``train`` + ``val``) is their union; it may
share images with its parts, and should hold exactly theirs.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from os import PathLike
from pathlib import Path

import numpy as np

from detaccel.data.errors import DatasetError
from detaccel.data.records import DetectionDataset, ImageRecord
from detaccel.data.voc import ALL_SPLIT, list_image_sets, read_image_set

__all__ = [
    "SplitOverlap",
    "part_sizes",
    "split_dataset",
    "split_overlaps",
    "stratified_split",
    "train_test_overlap",
    "union_parts",
    "union_problems",
    "voc_split_ids",
    "voc_train_test_warning",
    "write_split_files",
]

_EXAMPLES = 3
# How split names are ordered in messages.
_CONVENTIONAL_ORDER = {"train": 0, "val": 1, "trainval": 2, "test": 3}


def _images(count: int) -> str:
    return f"{count} image{'' if count == 1 else 's'}"


def part_sizes(count: int, ratios: Sequence[float]) -> list[int]:
    """``count`` items shared out by ``ratios`` (largest remainders), each part one at least if it can."""
    total = float(sum(ratios))
    exact = [count * r / total for r in ratios]
    sizes = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(ratios)), key=lambda i: (-(exact[i] - sizes[i]), i))
    for i in by_remainder[: count - sum(sizes)]:
        sizes[i] += 1
    for i in range(len(sizes)):  # an empty part takes one item from the largest part, if it can spare one
        largest = max(range(len(sizes)), key=lambda j: (sizes[j], -j))
        if sizes[i] == 0 and sizes[largest] > 1:
            sizes[i] += 1
            sizes[largest] -= 1
    return sizes


def stratified_split(
    image_classes: Sequence[Collection[int]], ratios: Sequence[float], seed: int = 0
) -> list[int]:
    """The part (index into ``ratios``) of each image, stratified by class.

    Part sizes follow :func:`part_sizes` exactly. Images are placed rarest class
    first (iterative stratification): each goes to the part that has none of its
    rarest class yet, else to the part furthest below its share of that class.
    So every class with at least as many images as there are parts appears in
    each part (as far as the part sizes allow), and the class proportions follow
    ``ratios``. The result depends on ``seed`` and nothing else.
    """
    if not ratios or min(ratios) <= 0:
        raise ValueError("ratios must be positive")
    count, parts = len(image_classes), len(ratios)
    total = float(sum(ratios))
    share = [r / total for r in ratios]
    sizes = part_sizes(count, ratios)
    room = list(sizes)
    classes = [sorted(set(c)) for c in image_classes]
    frequency: dict[int, int] = {}
    for image in classes:
        for c in image:
            frequency[c] = frequency.get(c, 0) + 1
    have = {c: [0] * parts for c in frequency}

    def rarest(index: int) -> tuple[float, int]:
        image = classes[index]
        return min((frequency[c], c) for c in image) if image else (math.inf, -1)

    def score(part: int, image: list[int], rare: int) -> tuple[bool, float, float, float, int]:
        if not image:  # no objects: to the part with the most room left for its size
            return False, 0.0, 0.0, room[part] / sizes[part], -part
        deficit = share[part] * frequency[rare] - have[rare][part]
        overall = sum(share[part] * frequency[c] - have[c][part] for c in image)
        return have[rare][part] == 0, deficit, overall, room[part] / sizes[part], -part

    shuffled = np.random.default_rng(seed).permutation(count).tolist()
    assignment = [-1] * count
    for index in sorted(shuffled, key=rarest):  # stable: ties keep the seeded order
        image, rare = classes[index], rarest(index)[1]
        best = max((p for p in range(parts) if room[p] > 0), key=lambda p: score(p, image, rare))
        assignment[index] = best
        room[best] -= 1
        for c in image:
            have[c][best] += 1
    return assignment


def split_dataset(
    dataset: DetectionDataset, names: Sequence[str], ratios: Sequence[float], seed: int = 0
) -> dict[str, list[ImageRecord]]:
    """The dataset's records in the named parts (see :func:`stratified_split`), in dataset order."""
    if len(names) != len(ratios):
        raise ValueError(f"{len(names)} split names but {len(ratios)} ratios")
    assignment = stratified_split([r.labels.tolist() for r in dataset.records], ratios, seed)
    parts: dict[str, list[ImageRecord]] = {name: [] for name in names}
    for record, part in zip(dataset.records, assignment, strict=True):
        parts[names[part]].append(record)
    return parts


def write_split_files(
    directory: str | PathLike, splits: Mapping[str, Sequence[str]], overwrite: bool = False
) -> list[Path]:
    """Write ``<directory>/<split>.txt`` (one id a line) for each split; returns the paths.

    Raises :class:`FileExistsError` naming the first file that exists unless ``overwrite``,
    before writing anything.
    """
    directory = Path(directory)
    paths = [directory / f"{name}.txt" for name in splits]
    if not overwrite:
        for path in paths:
            if path.exists():
                raise FileExistsError(str(path))
    directory.mkdir(parents=True, exist_ok=True)
    for path, ids in zip(paths, splits.values(), strict=True):
        path.write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
    return paths


def union_parts(name: str, names: Collection[str]) -> tuple[str, ...] | None:
    """The other split names that ``name`` joins (``"trainval"`` -> ``("train", "val")``), or ``None``."""
    others = sorted((n for n in names if n != name and n), key=len, reverse=True)
    best: dict[int, tuple[str, ...]] = {0: ()}
    for end in range(1, len(name) + 1):
        for part in others:
            start = end - len(part)
            if start >= 0 and start in best and name[start:end] == part and end not in best:
                best[end] = (*best[start], part)
    parts = best.get(len(name))
    return parts if parts is not None and len(parts) >= 2 else None


@dataclass(frozen=True)
class SplitOverlap:
    """Two splits that should be disjoint but share images."""

    first: str
    second: str
    shared: int
    first_size: int
    second_size: int
    examples: tuple[str, ...]

    def __str__(self) -> str:
        examples = ", ".join(self.examples) + (", ..." if self.shared > len(self.examples) else "")
        return (
            f"splits {self.first!r} ({_images(self.first_size)}) and {self.second!r} "
            f"({_images(self.second_size)}) share {_images(self.shared)} ({examples}); "
            "they should be disjoint"
        )


def _examples(ids: Sequence[str], members: Collection[str]) -> tuple[str, ...]:
    return tuple(str(i) for i in ids if i in members)[:_EXAMPLES]


def split_overlaps(splits: Mapping[str, Sequence[str]]) -> list[SplitOverlap]:
    """Pairs of splits that share images though neither is a union holding the other (nor ``all``)."""
    names = sorted(splits, key=lambda name: (_CONVENTIONAL_ORDER.get(name, len(_CONVENTIONAL_ORDER)), name))
    sets = {name: set(ids) for name, ids in splits.items()}
    found = []
    for first, second in combinations(names, 2):
        if ALL_SPLIT in (first, second):
            continue
        if second in (union_parts(first, names) or ()) or first in (union_parts(second, names) or ()):
            continue
        shared = sets[first] & sets[second]
        if shared:
            examples = _examples(splits[first], shared)
            found.append(
                SplitOverlap(first, second, len(shared), len(sets[first]), len(sets[second]), examples)
            )
    return found


def union_problems(splits: Mapping[str, Sequence[str]]) -> list[str]:
    """Splits named as unions of others (``trainval``) that do not hold exactly their parts' images."""
    problems = []
    for name, ids in splits.items():
        parts = union_parts(name, splits)
        if parts is None:
            continue
        own = set(ids)
        union = set().union(*(set(splits[p]) for p in parts))
        missing, extra = union - own, own - union
        if missing or extra:
            said = []
            if missing:
                said.append(f"lacks {len(missing)} of their {len(union)} images")
            if extra:
                said.append(f"has {_images(len(extra))} in none of them")
            problems.append(f"split {name!r} is not {' + '.join(map(repr, parts))}: it {' and '.join(said)}")
    return problems


def train_test_overlap(
    train_split: str, train_ids: Sequence[str], test_split: str, test_ids: Sequence[str]
) -> str | None:
    """Why testing on ``test_ids`` after training on ``train_ids`` is optimistic; ``None`` when disjoint."""
    if train_split == test_split:
        return f"the train and test splits are the same split ({train_split!r})"
    shared = set(train_ids) & set(test_ids)
    if not shared:
        return None
    examples = ", ".join(_examples(test_ids, shared)) + (", ..." if len(shared) > _EXAMPLES else "")
    return (
        f"train split {train_split!r} and test split {test_split!r} share {_images(len(shared))} "
        f"({len(shared)} of {len(set(train_ids))} training, {len(shared)} of {len(set(test_ids))} test "
        f"images: {examples}); the evaluation measures images the model was trained on"
    )


def voc_split_ids(root: str | PathLike, split_dir: str | PathLike | None = None) -> dict[str, list[str]]:
    """Every split file of a VOC dataset (in ``split_dir`` when given): name to ids."""
    return {name: read_image_set(root, name, split_dir) for name in list_image_sets(root, split_dir)}


def voc_train_test_warning(
    root: str | PathLike, train_split: str, test_split: str, split_dir: str | PathLike | None = None
) -> str | None:
    """:func:`train_test_overlap` for two splits of a VOC dataset; ``None`` also when one cannot be read."""
    try:
        train_ids = read_image_set(root, train_split, split_dir)
        test_ids = read_image_set(root, test_split, split_dir)
    except DatasetError:
        return None
    return train_test_overlap(train_split, train_ids, test_split, test_ids)
