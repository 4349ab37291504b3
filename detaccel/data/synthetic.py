"""The embedded synthetic detection dataset.

Each image is a cluttered, textured background with one to six objects from
:data:`SYNTHETIC_CLASSES`, drawn in sequence so that later objects partly hide
earlier ones. Every class has its own shape and a usual texture, but
background clutter uses the same textures (and sometimes an object wears
another class's texture), so shape matters. Boxes are the tight box of each
object's visible pixels. An object is ``truncated`` when it extends past the
image border and ``difficult`` when under 55% of it is visible or its
visible box is under 10 pixels on a side.

Everything derives from a numpy ``Generator`` seeded with ``(seed, index)``:
an image depends only on the seed and its index, never on how many images
are generated or on any global random state.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import cv2
import numpy as np

from detaccel.data.classes import SYNTHETIC_CLASSES
from detaccel.data.coco import write_coco_json
from detaccel.data.io import write_jpeg
from detaccel.data.voc import write_image_sets, write_voc_annotation

__all__ = [
    "DEFAULT_SIZE",
    "SPLIT_FRACTIONS",
    "SYNTHETIC_CLASSES",
    "SyntheticObject",
    "render_image",
    "split_indices",
    "synthetic_image",
    "write_synthetic",
]

DEFAULT_SIZE = (320, 240)  # width, height
SPLIT_FRACTIONS = {"train": 0.6, "val": 0.1, "test": 0.3}
# VOC2007's layout and name, so that torchvision's VOCDetection(root, year="2007") reads it as it is.
VOC_DATASET_NAME = "VOC2007"
# Where earlier versions wrote it (replaced with the rest when the set is written anew).
LEGACY_VOC_DATASET_NAME = "SYNTH"
JPEG_QUALITY = 90

# TEXTURES[label] is the usual texture of class SYNTHETIC_CLASSES[label].
TEXTURES = ("radial", "checker", "stripes", "gradient", "solid", "dots")
OTHER_TEXTURE_PROBABILITY = 0.15
COUNT_PROBABILITIES = np.array([0.14, 0.24, 0.24, 0.18, 0.12, 0.08])  # 1..6 objects
MIN_VISIBLE = 0.3  # placements hiding more of any object are redrawn
MIN_IN_IMAGE = 0.6
DIFFICULT_VISIBLE = 0.55
DIFFICULT_SIDE = 10
MIN_SIZE = 16.0


@dataclass(frozen=True)
class SyntheticObject:
    """One drawn object: label, inclusive pixel box of its visible part, flags, visible fraction."""

    label: int
    box: tuple[int, int, int, int]
    difficult: bool
    truncated: bool
    visible: float


def _unit_polygon(kind: str) -> np.ndarray:
    if kind == "square":
        return np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)], np.float64)
    if kind == "triangle":
        return np.array([(0, -1), (1, 0.75), (-1, 0.75)], np.float64)
    if kind == "star":
        angles = -np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
        return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    if kind == "cross":
        t = 0.34
        return np.array(
            [
                (-t, -1),
                (t, -1),
                (t, -t),
                (1, -t),
                (1, t),
                (t, t),
                (t, 1),
                (-t, 1),
                (-t, t),
                (-1, t),
                (-1, -t),
                (-t, -t),
            ],
            np.float64,
        )
    raise ValueError(kind)


_POLYGONS = {kind: _unit_polygon(kind) for kind in ("square", "triangle", "star", "cross")}
_SHIFT = 4  # sub-pixel bits for OpenCV drawing
_ONE = 1 << _SHIFT


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.round(points * _ONE).astype(np.int32)


def _draw_shape(
    mask: np.ndarray,
    kind: str,
    cx: float,
    cy: float,
    half_w: float,
    half_h: float,
    angle: float,
    ring_inner: float = 0.6,
) -> None:
    """Fill ``mask`` with 1 inside the shape (centre, half extents, rotation in degrees)."""
    if kind in ("disc", "ring"):
        center = (round(cx * _ONE), round(cy * _ONE))
        axes = (max(round(half_w * _ONE), 1), max(round(half_h * _ONE), 1))
        cv2.ellipse(mask, center, axes, angle, 0, 360, 1, -1, cv2.LINE_8, _SHIFT)
        if kind == "ring":
            inner = (max(int(axes[0] * ring_inner), 1), max(int(axes[1] * ring_inner), 1))
            cv2.ellipse(mask, center, inner, angle, 0, 360, 0, -1, cv2.LINE_8, _SHIFT)
        return
    theta = math.radians(angle)
    rotation = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    points = (_POLYGONS[kind] * (half_w, half_h)) @ rotation.T + (cx, cy)
    cv2.fillPoly(mask, [_fixed(points)], 1, cv2.LINE_8, _SHIFT)


def _random_color(rng: np.random.Generator, saturation: tuple[float, float] = (0.35, 1.0)) -> np.ndarray:
    hue = rng.uniform(0, 180)
    sat = rng.uniform(*saturation) * 255
    val = rng.uniform(60, 255)
    hsv = np.array([[[hue, sat, val]]], np.float32)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def _luma(color: np.ndarray) -> float:
    return float(color @ np.array([0.299, 0.587, 0.114], np.float32))


def _texture(
    rng: np.random.Generator,
    kind: str,
    h: int,
    w: int,
    cx: float,
    cy: float,
    colors: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    """A ``[h, w, 3]`` float32 patch of the texture, with ``(cx, cy)`` the shape centre in the patch."""
    first, second = colors
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]
    if kind == "solid":
        patch = np.empty((h, w, 3), np.float32)
        patch[:] = first
        return patch
    if kind == "checker":
        cell = int(rng.integers(3, 8))
        weight = (((xx // cell) + (yy // cell)) % 2).astype(np.float32)
    elif kind == "stripes":
        period = rng.uniform(4, 10)
        theta = rng.uniform(0, np.pi)
        phase = (xx * math.cos(theta) + yy * math.sin(theta)) / period
        weight = ((phase % 1.0) < 0.5).astype(np.float32)
    elif kind == "dots":
        period = int(rng.integers(5, 10))
        radius = period * rng.uniform(0.22, 0.34)
        dx = (xx % period) - period / 2
        dy = (yy % period) - period / 2
        weight = ((dx * dx + dy * dy) < radius * radius).astype(np.float32)
    elif kind == "gradient":
        theta = rng.uniform(0, 2 * np.pi)
        ramp = (xx - cx) * math.cos(theta) + (yy - cy) * math.sin(theta)
        weight = np.clip(0.5 + ramp / max(h, w, 1), 0.0, 1.0).astype(np.float32)
    elif kind == "radial":
        radius = max(h, w) / 2.0
        distance = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2) / max(radius, 1.0)
        weight = np.clip(distance, 0.0, 1.0).astype(np.float32)
    else:
        raise ValueError(kind)
    weight = np.broadcast_to(weight, (h, w))[..., None]
    return first * (1.0 - weight) + second * weight


def _paint(image: np.ndarray, mask: np.ndarray, texture: np.ndarray, y0: int, x0: int) -> None:
    region = image[y0 : y0 + texture.shape[0], x0 : x0 + texture.shape[1]]
    inside = mask[y0 : y0 + texture.shape[0], x0 : x0 + texture.shape[1]].astype(bool)
    region[inside] = texture[inside]


def _mask_bounds(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    grid_w, grid_h = int(rng.integers(2, 7)), int(rng.integers(2, 6))
    base = _random_color(rng, (0.05, 0.6))
    field = base + rng.normal(0, 40, size=(grid_h, grid_w, 3)).astype(np.float32)
    image = cv2.resize(field, (width, height), interpolation=cv2.INTER_CUBIC)
    overlay_kind = rng.choice(("stripes", "checker", "dots", "gradient", "grain"))
    alpha = rng.uniform(0.1, 0.35)
    if overlay_kind == "grain":
        grain = rng.normal(0, 1, size=(height // 4 + 1, width // 4 + 1, 1)).astype(np.float32)
        grain = cv2.resize(grain, (width, height), interpolation=cv2.INTER_LINEAR)[..., None]
        image += alpha * 60 * grain
    else:
        colors = (_random_color(rng, (0.0, 0.5)), _random_color(rng, (0.0, 0.5)))
        overlay = _texture(rng, overlay_kind, height, width, width / 2, height / 2, colors)
        image = (1 - alpha) * image + alpha * overlay
    _clutter(rng, image)
    return image


def _clutter(rng: np.random.Generator, image: np.ndarray) -> None:
    """Distractors: textured blobs, lines, arcs and outlines."""
    height, width = image.shape[:2]
    mask = np.zeros((height, width), np.uint8)
    for _ in range(int(rng.integers(6, 16))):
        kind = rng.choice(("blob", "blob", "line", "arc", "outline"))
        color = tuple(float(c) for c in _random_color(rng))
        thickness = int(rng.integers(1, 4))
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        size = rng.uniform(6, 45)
        if kind == "blob":
            count = int(rng.integers(5, 10))
            angles = np.sort(rng.uniform(0, 2 * np.pi, count))
            radii = size * rng.uniform(0.4, 1.0, count)
            points = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
            mask[:] = 0
            cv2.fillPoly(mask, [_fixed(points)], 1, cv2.LINE_8, _SHIFT)
            bounds = _mask_bounds(mask)
            if bounds is None:
                continue
            x0, y0, x1, y1 = bounds
            colors = (_random_color(rng), _random_color(rng))
            texture = _texture(rng, rng.choice(TEXTURES), y1 - y0 + 1, x1 - x0 + 1, cx - x0, cy - y0, colors)
            _paint(image, mask, texture, y0, x0)
        elif kind == "line":
            angle = rng.uniform(0, np.pi)
            length = rng.uniform(20, 160)
            dx, dy = 0.5 * length * math.cos(angle), 0.5 * length * math.sin(angle)
            ends = _fixed(np.array([(cx - dx, cy - dy), (cx + dx, cy + dy)]))
            cv2.line(image, tuple(ends[0]), tuple(ends[1]), color, thickness, cv2.LINE_AA, _SHIFT)
        elif kind == "arc":
            start = rng.uniform(0, 360)
            center = (int(cx * _ONE), int(cy * _ONE))
            axes = (int(size * _ONE), int(size * rng.uniform(0.5, 1.0) * _ONE))
            cv2.ellipse(
                image,
                center,
                axes,
                rng.uniform(0, 180),
                start,
                start + rng.uniform(60, 200),
                color,
                thickness,
                cv2.LINE_AA,
                _SHIFT,
            )
        else:
            half_w, half_h = size * rng.uniform(0.5, 1.2), size * rng.uniform(0.5, 1.2)
            corners = _fixed(np.array([(cx - half_w, cy - half_h), (cx + half_w, cy + half_h)]))
            cv2.rectangle(image, tuple(corners[0]), tuple(corners[1]), color, thickness, cv2.LINE_AA, _SHIFT)


@dataclass
class _Placed:
    label: int
    full_area: int
    mask: np.ndarray  # uint8 [H, W], the object's pixels inside the image
    truncated: bool


def _propose_object(
    rng: np.random.Generator, width: int, height: int, pad: int
) -> tuple[int, np.ndarray, int, tuple[float, float]]:
    """A random object: label, its mask inside the image, its whole area, its centre."""
    label = int(rng.integers(len(SYNTHETIC_CLASSES)))
    kind = SYNTHETIC_CLASSES[label]
    size = math.exp(rng.uniform(math.log(MIN_SIZE), math.log(0.6 * min(width, height))))
    aspect = math.exp(rng.uniform(math.log(0.6), math.log(1.67)))
    half_w, half_h = 0.5 * size * math.sqrt(aspect), 0.5 * size / math.sqrt(aspect)
    margin_x, margin_y = 0.75 * half_w, 0.75 * half_h  # an eighth of the width may stick out, more if rotated
    cx = rng.uniform(margin_x, width - margin_x)
    cy = rng.uniform(margin_y, height - margin_y)
    angle = {"disc": 180.0, "ring": 180.0, "triangle": 360.0, "star": 72.0}.get(kind, 0.0)
    angle = rng.uniform(0, angle) if angle else rng.uniform(-25, 25)
    canvas = np.zeros((height + 2 * pad, width + 2 * pad), np.uint8)
    _draw_shape(canvas, kind, cx + pad, cy + pad, half_w, half_h, angle, rng.uniform(0.45, 0.7))
    full_area = int(canvas.sum())
    mask = np.ascontiguousarray(canvas[pad : pad + height, pad : pad + width])
    return label, mask, full_area, (cx, cy)


def _object_colors(rng: np.random.Generator, background_luma: float) -> tuple[np.ndarray, np.ndarray]:
    first = _random_color(rng)
    for _ in range(4):
        if abs(_luma(first) - background_luma) >= 40:
            break
        first = _random_color(rng)
    second = first * rng.uniform(0.35, 0.7) if rng.random() < 0.5 else _random_color(rng)
    return first, np.clip(second, 0, 255).astype(np.float32)


def render_image(
    rng: np.random.Generator, width: int = 320, height: int = 240
) -> tuple[np.ndarray, list[SyntheticObject]]:
    """Draw one image (RGB ``uint8``) and return it with its objects."""
    image = _background(rng, width, height)
    pad = math.ceil(0.6 * min(width, height)) + 4  # room for any shape that sticks out
    count = int(rng.choice(np.arange(1, 7), p=COUNT_PROBABILITIES))
    placed: list[_Placed] = []
    for _ in range(count):
        for _attempt in range(12):
            label, mask, full_area, (cx, cy) = _propose_object(rng, width, height, pad)
            in_image = int(mask.sum())
            if full_area == 0 or in_image < MIN_IN_IMAGE * full_area:
                continue
            hidden_ok = all(
                _visible_area(p.mask, [mask] + [q.mask for q in placed[i + 1 :]]) >= MIN_VISIBLE * p.full_area
                for i, p in enumerate(placed)
            )
            if hidden_ok:
                break
        else:
            continue
        bounds = _mask_bounds(mask)
        assert bounds is not None
        x0, y0, x1, y1 = bounds
        kind = TEXTURES[label]
        if rng.random() < OTHER_TEXTURE_PROBABILITY:
            kind = TEXTURES[int(rng.integers(len(TEXTURES)))]
        region = image[y0 : y1 + 1, x0 : x1 + 1]
        colors = _object_colors(rng, _luma(region.reshape(-1, 3).mean(axis=0)))
        texture = _texture(rng, kind, y1 - y0 + 1, x1 - x0 + 1, cx - x0, cy - y0, colors)
        _paint(image, mask, texture, y0, x0)
        truncated = in_image < full_area
        placed.append(_Placed(label, full_area, mask, truncated))

    objects = []
    covered = np.zeros((height, width), bool)
    for p in reversed(placed):
        visible = p.mask.astype(bool) & ~covered
        covered |= p.mask.astype(bool)
        bounds = _mask_bounds(visible)
        if bounds is None:
            continue
        fraction = float(visible.sum()) / p.full_area
        side = min(bounds[2] - bounds[0] + 1, bounds[3] - bounds[1] + 1)
        difficult = fraction < DIFFICULT_VISIBLE or side < DIFFICULT_SIDE
        objects.append(SyntheticObject(p.label, bounds, difficult, p.truncated, round(fraction, 4)))
    objects.reverse()
    return _finish(rng, image), objects


def _visible_area(mask: np.ndarray, above: list[np.ndarray]) -> int:
    """Pixels of ``mask`` not covered by any of the masks drawn over it."""
    hidden = np.zeros(mask.shape, bool)
    for other in above:
        hidden |= other.astype(bool)
    return int((mask.astype(bool) & ~hidden).sum())


def _finish(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Lighting gradient, sensor noise and a slight blur."""
    height, width = image.shape[:2]
    yy, xx = np.ogrid[0:height, 0:width]
    theta = rng.uniform(0, 2 * np.pi)
    ramp = ((xx - width / 2) * math.cos(theta) + (yy - height / 2) * math.sin(theta)) / max(width, height)
    image = image * (1.0 + rng.uniform(0.0, 0.4) * ramp).astype(np.float32)[..., None]
    noise = np.frombuffer(rng.bytes(image.size), np.uint8).reshape(image.shape).astype(np.float32)
    image += (noise - 127.5) * np.float32(rng.uniform(2, 7) / 73.9)  # uniform noise, std 2..7
    if rng.random() < 0.6:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.4, 0.8))
    return np.clip(image, 0, 255).astype(np.uint8)


def synthetic_image(
    seed: int, index: int, width: int = 320, height: int = 240
) -> tuple[np.ndarray, list[SyntheticObject]]:
    """Image ``index`` of the synthetic set with ``seed``: RGB ``uint8`` and its objects."""
    return render_image(np.random.default_rng([int(seed), int(index)]), width, height)


def split_indices(num_images: int, seed: int) -> dict[str, list[int]]:
    """Image indices of the ``train``, ``val``, ``test`` and ``trainval`` splits (sorted)."""
    order = np.random.default_rng([int(seed), 2**32 - 1]).permutation(num_images)
    num_val = round(SPLIT_FRACTIONS["val"] * num_images)
    num_test = round(SPLIT_FRACTIONS["test"] * num_images)
    if num_images >= 3:
        num_val, num_test = max(num_val, 1), max(num_test, 1)
    num_train = num_images - num_val - num_test
    splits = {
        "train": sorted(order[:num_train].tolist()),
        "val": sorted(order[num_train : num_train + num_val].tolist()),
        "test": sorted(order[num_train + num_val :].tolist()),
    }
    splits["trainval"] = sorted(splits["train"] + splits["val"])
    return splits


def image_name(index: int) -> str:
    """File stem (and VOC id) of image ``index``: ``000001`` for index 0."""
    return f"{index + 1:06d}"


def _generate(
    seed: int, num_images: int, width: int, height: int
) -> Iterator[tuple[int, np.ndarray, list[SyntheticObject]]]:
    for index in range(num_images):
        image, objects = synthetic_image(seed, index, width, height)
        yield index, image, objects


def _prepare_output(paths: list[Path], out_dir: Path, overwrite: bool) -> None:
    existing = [p for p in paths if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} already exists (rerun with --overwrite to replace it)")
    for p in existing:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)


def write_synthetic(
    out_dir: str | PathLike,
    format: str = "voc",
    *,
    seed: int = 0,
    num_images: int = 300,
    width: int = DEFAULT_SIZE[0],
    height: int = DEFAULT_SIZE[1],
    overwrite: bool = False,
) -> Path:
    """Write the synthetic dataset and return the directory to load it from.

    ``format="voc"`` writes ``<out>/VOCdevkit/VOC2007/`` (``Annotations/``,
    ``JPEGImages/``, ``ImageSets/Main/{train,val,test,trainval}.txt``) and
    returns that directory. ``format="coco"`` writes ``<out>/images/`` and
    ``<out>/annotations/instances_{train,val,test,trainval}.json`` and returns
    ``<out>``. Both also write ``<out>/synthetic.json`` with the parameters.
    """
    if format not in ("voc", "coco"):
        raise ValueError(f"format must be 'voc' or 'coco', got {format!r}")
    if num_images < 1:
        raise ValueError("num_images must be at least 1")
    out_dir = Path(out_dir)
    splits = split_indices(num_images, seed)
    meta = {
        "generator": "detaccel synthetic",
        "version": 1,
        "format": format,
        "seed": int(seed),
        "num_images": int(num_images),
        "width": int(width),
        "height": int(height),
        "classes": list(SYNTHETIC_CLASSES),
        "splits": {name: len(indices) for name, indices in splits.items()},
    }
    if format == "voc":
        root = out_dir / "VOCdevkit" / VOC_DATASET_NAME
        legacy = out_dir / "VOCdevkit" / LEGACY_VOC_DATASET_NAME
        _prepare_output([root, legacy, out_dir / "synthetic.json"], out_dir, overwrite)
        _write_voc(root, seed, num_images, width, height, splits)
    else:
        root = out_dir
        _prepare_output(
            [out_dir / "images", out_dir / "annotations", out_dir / "synthetic.json"], out_dir, overwrite
        )
        _write_coco(root, seed, num_images, width, height, splits)
    (out_dir / "synthetic.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return root


def _write_voc(
    root: Path, seed: int, num_images: int, width: int, height: int, splits: dict[str, list[int]]
) -> None:
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    for index, image, objects in _generate(seed, num_images, width, height):
        name = image_name(index)
        write_jpeg(root / "JPEGImages" / f"{name}.jpg", image, JPEG_QUALITY)
        write_voc_annotation(
            root / "Annotations" / f"{name}.xml",
            filename=f"{name}.jpg",
            width=width,
            height=height,
            objects=[(SYNTHETIC_CLASSES[o.label], o.box, o.difficult, o.truncated) for o in objects],
            folder=VOC_DATASET_NAME,
            database="detaccel synthetic",
        )
    write_image_sets(root, {split: [image_name(i) for i in indices] for split, indices in splits.items()})


def _write_coco(
    root: Path, seed: int, num_images: int, width: int, height: int, splits: dict[str, list[int]]
) -> None:
    (root / "images").mkdir(parents=True)
    images, annotations = {}, {}
    next_id = 1
    for index, image, objects in _generate(seed, num_images, width, height):
        name = image_name(index)
        write_jpeg(root / "images" / f"{name}.jpg", image, JPEG_QUALITY)
        images[index] = {"id": index + 1, "file_name": f"{name}.jpg", "width": width, "height": height}
        annotations[index] = []
        for o in objects:
            x1, y1, x2, y2 = o.box
            w, h = x2 - x1 + 1, y2 - y1 + 1
            annotations[index].append(
                {
                    "id": next_id,
                    "image_id": index + 1,
                    "category_id": o.label + 1,
                    "bbox": [x1, y1, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                    "difficult": int(o.difficult),
                }
            )
            next_id += 1
    categories = [
        {"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(SYNTHETIC_CLASSES)
    ]
    for split, indices in splits.items():
        write_coco_json(
            root / "annotations" / f"instances_{split}.json",
            images=[images[i] for i in indices],
            annotations=[a for i in indices for a in annotations[i]],
            categories=categories,
            info={"description": f"detaccel synthetic ({split})", "version": "1"},
        )
