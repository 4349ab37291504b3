"""Argument checks for generator parameters; errors name the parameter."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def check_int(name: str, value: Any, minimum: int = 1, allow_none: bool = False) -> int | None:
    """An int ``>= minimum`` (``None`` passes when allowed)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        expected = f"an int >= {minimum}" + (" or None" if allow_none else "")
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    return value


def check_float(
    name: str, value: Any, minimum: float = 0.0, strict: bool = False, allow_none: bool = False
) -> float | None:
    """A finite number ``>= minimum`` (``> minimum`` when ``strict``)."""
    if value is None and allow_none:
        return None
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = value > minimum if strict else value >= minimum
    if not ok:
        relation = ">" if strict else ">="
        expected = f"a finite number {relation} {minimum}" + (" or None" if allow_none else "")
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    return float(value)


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """One of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_pairs(name: str, value: Any) -> tuple[tuple[float, float], ...]:
    """A sequence of ``(a, b)`` pairs of positive finite numbers."""
    try:
        pairs = tuple((float(a), float(b)) for a, b in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a sequence of (number, number) pairs, got {value!r}") from None
    if not all(math.isfinite(v) and v > 0 for pair in pairs for v in pair):
        raise ValueError(f"{name}: every value must be a positive finite number, got {value!r}")
    return pairs


def check_numbers(name: str, value: Any, positive: bool = True) -> tuple[float, ...]:
    """A non-empty sequence of finite numbers (positive ones unless ``positive=False``)."""
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a sequence of numbers, got {value!r}") from None
    if not numbers or not all(math.isfinite(v) and (v > 0 or not positive) for v in numbers):
        kind = "positive finite" if positive else "finite"
        raise ValueError(f"{name}: expected a non-empty sequence of {kind} numbers, got {value!r}")
    return numbers
