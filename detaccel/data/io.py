"""Image files: reading, integrity checks and decoding with OpenCV."""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import cv2
import numpy as np

from detaccel.data.errors import DatasetError

_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Markers without a length field: TEM, RST0-7, SOI, EOI.
_STANDALONE_MARKERS = {0x01, 0xD8, 0xD9, *range(0xD0, 0xD8)}
_DECODE_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION


def read_image_bytes(path: str | PathLike) -> bytes:
    """The bytes of an image file; a missing or unreadable file raises :class:`DatasetError`."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise DatasetError(path, "image file not found") from None
    except OSError as error:
        raise DatasetError(path, f"cannot read image file ({error.strerror or error})") from None
    if not data:
        raise DatasetError(path, "image file is empty")
    return data


def _jpeg_problem(data: bytes) -> str | None:
    """Why a JPEG byte string is incomplete, or ``None`` when its structure is whole.

    Walks the marker segments up to the first scan, then requires an
    end-of-image marker after it (byte stuffing keeps that marker out of the
    entropy-coded data, so one found there is the real end).
    """
    pos = 2
    while True:
        if pos + 2 > len(data):
            return "truncated JPEG (ends before the image data)"
        if data[pos] != 0xFF:
            return f"corrupt JPEG (no marker at byte {pos})"
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA:  # start of scan
            break
        if marker in _STANDALONE_MARKERS:
            pos += 2
            continue
        if pos + 4 > len(data):
            return "truncated JPEG (ends inside a header segment)"
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    if data.find(_JPEG_EOI, pos) < 0:
        return "truncated JPEG (no end-of-image marker)"
    return None


def image_problem(data: bytes) -> str | None:
    """A structural problem of an encoded image (truncated JPEG or PNG), or ``None``."""
    if data.startswith(_JPEG_SOI):
        return _jpeg_problem(data)
    if data.startswith(_PNG_SIGNATURE) and b"IEND" not in data[-32:]:
        return "truncated PNG (no IEND chunk)"
    return None


def decode_image(data: bytes, path: str | PathLike = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes to an RGB ``uint8`` array ``[H, W, 3]``.

    EXIF orientation is ignored so that pixel coordinates match the
    annotations. A truncated or undecodable image raises :class:`DatasetError`.
    """
    problem = image_problem(data)
    if problem is not None:
        raise DatasetError(path, problem)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), _DECODE_FLAGS)
    if image is None:
        raise DatasetError(path, "cannot decode image (corrupt file or unsupported format)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_image(path: str | PathLike) -> np.ndarray:
    """Read and decode an image file to RGB ``uint8`` ``[H, W, 3]``."""
    return decode_image(read_image_bytes(path), path)


def write_jpeg(path: str | PathLike, image_rgb: np.ndarray, quality: int = 90) -> None:
    """Encode an RGB ``uint8`` image as JPEG and write it."""
    ok, buffer = cv2.imencode(
        ".jpg", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    )
    if not ok:
        raise OSError(f"{path}: JPEG encoding failed")
    Path(path).write_bytes(buffer.tobytes())
