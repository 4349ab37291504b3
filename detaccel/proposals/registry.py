"""Proposal generators by name, and building one from configuration.

The built-in generators are imported only when first asked for, so looking
up ``sliding_window`` does not import torch and ``r2cnn`` does not need
OpenCV's contrib modules to have been loaded.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any

from detaccel.proposals.base import GeneratorBase

_BUILTIN: dict[str, str] = {
    "edge_boxes": "detaccel.proposals.edge_boxes:EdgeBoxes",
    "precomputed": "detaccel.proposals.precomputed:Precomputed",
    "r2cnn": "detaccel.proposals.r2cnn:R2CNN",
    "selective_search": "detaccel.proposals.selective_search:SelectiveSearch",
    "sliding_window": "detaccel.proposals.sliding_window:SlidingWindow",
}
_REGISTERED: dict[str, type] = {}


def canonical_name(name: str) -> str:
    """``name`` as the registry keys it: stripped, lower case, hyphens as underscores."""
    if not isinstance(name, str):
        raise TypeError(f"generator name: expected a string, got {type(name).__name__}")
    return name.strip().lower().replace("-", "_")


def available_generators() -> list[str]:
    """Names that :func:`build_generator` accepts, sorted."""
    return sorted({*_BUILTIN, *_REGISTERED})


def register_generator(name: str, cls: type | None = None) -> Any:
    """Register ``cls`` under ``name``; usable as ``@register_generator("name")``.

    ``cls`` must be constructible with keyword arguments and return objects
    with ``generate``/``generate_batch`` (see :class:`~detaccel.proposals.base.ProposalGenerator`).
    Re-registering a name replaces it.
    """
    key = canonical_name(name)

    def add(generator_class: type) -> type:
        if not inspect.isclass(generator_class) or not callable(getattr(generator_class, "generate", None)):
            raise TypeError(f"{generator_class!r} is not a proposal generator class (no generate method)")
        _REGISTERED[key] = generator_class
        return generator_class

    return add if cls is None else add(cls)


def generator_class(name: str) -> type:
    """The class registered under ``name`` (hyphens and case are ignored)."""
    key = canonical_name(name)
    if key in _REGISTERED:
        return _REGISTERED[key]
    if key in _BUILTIN:
        module, _, attr = _BUILTIN[key].partition(":")
        return getattr(importlib.import_module(module), attr)
    raise ValueError(
        f"unknown proposal generator {name!r}; known generators: {', '.join(available_generators())}"
    )


def generator_parameters(name: str) -> dict[str, Any]:
    """Parameters of generator ``name`` and their defaults (``inspect.Parameter.empty`` when required)."""
    signature = inspect.signature(generator_class(name).__init__)
    return {
        p.name: p.default
        for p in signature.parameters.values()
        if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def build_generator(name: str, **params: Any) -> GeneratorBase:
    """Construct generator ``name`` with ``params``.

    Raises:
        ValueError: unknown generator name (the message lists the known ones),
            unknown or missing parameters (named, with the accepted ones), or
            a parameter value the generator rejects.
    """
    cls = generator_class(name)
    signature = inspect.signature(cls.__init__)
    accepted = generator_parameters(name)
    takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    unknown = sorted(set(params) - set(accepted))
    if unknown and not takes_any:
        raise ValueError(
            f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
            f"for proposal generator {canonical_name(name)!r}; accepted: {', '.join(accepted)}"
        )
    missing = [k for k, default in accepted.items() if default is inspect.Parameter.empty and k not in params]
    if missing:
        raise ValueError(
            f"proposal generator {canonical_name(name)!r} needs parameter{'s' if len(missing) > 1 else ''} "
            f"{', '.join(map(repr, missing))}"
        )
    return cls(**params)


def build_from_config(config: Mapping[str, Any]) -> GeneratorBase:
    """Build from a mapping such as ``{"name": "edge_boxes", "max_boxes": 1000}``."""
    if not isinstance(config, Mapping) or "name" not in config:
        raise ValueError("generator config: expected a mapping with a 'name' entry")
    params = dict(config)
    return build_generator(params.pop("name"), **params)
