"""Feature-extractor backbones: walking, cutting and building ``nn.Sequential``-like networks."""

from __future__ import annotations

from collections.abc import Iterator

from torch import nn

# torchvision classification models whose ``features`` is a plain sequence of layers.
SEQUENTIAL_FEATURE_MODELS = (
    "alexnet",
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
)
_VGG_CONFIGS = {"vgg11": "A", "vgg13": "B", "vgg16": "D", "vgg19": "E"}

LayerRef = int | str | None


def _leaves(module: nn.Module, prefix: str) -> Iterator[tuple[str, nn.Module]]:
    if isinstance(module, nn.Sequential):
        for name, child in module.named_children():
            yield from _leaves(child, f"{prefix}.{name}" if prefix else name)
    else:
        yield prefix, module


def flatten_layers(module: nn.Module, upto: LayerRef = None) -> list[tuple[str, nn.Module]]:
    """The layers of ``module`` in order, nested ``nn.Sequential`` containers flattened.

    Each entry is ``(qualified name, layer)`` with names as in
    ``module.named_modules()`` (``"29"``, ``"features.29"``, ``"3.1"``).

    Args:
        upto: last layer to include (inclusive): an int indexes the top-level
            children like ``module[upto]`` (negative counts from the end), a
            string is a qualified name of a layer or of a nested container
            (its whole content is included); ``None`` includes everything.

    Raises:
        IndexError: an out-of-range index.
        ValueError: an unknown name.
    """
    leaves = list(_leaves(module, ""))
    if upto is None:
        return leaves
    if isinstance(upto, bool) or not isinstance(upto, int | str):
        raise TypeError(f"upto: expected an int index, a layer name or None, got {upto!r}")
    if isinstance(upto, int):
        if not isinstance(module, nn.Sequential):
            raise TypeError(f"upto: an index needs an nn.Sequential, got {type(module).__name__}")
        children = [name for name, _ in module.named_children()]
        if not -len(children) <= upto < len(children):
            raise IndexError(f"upto: index {upto} out of range for {len(children)} top-level layers")
        upto = children[upto]
    last = None
    for i, (name, _) in enumerate(leaves):
        if name == upto or name.startswith(upto + "."):
            last = i
    if last is None:
        names = [name for name, _ in leaves]
        shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
        raise ValueError(f"upto: no layer named {upto!r} (layers: {shown})")
    return leaves[: last + 1]


def truncate(module: nn.Module, upto: LayerRef = None) -> nn.Sequential:
    """An ``nn.Sequential`` of the (shared, not copied) layers of :func:`flatten_layers`."""
    return nn.Sequential(*(layer for _, layer in flatten_layers(module, upto)))


def default_cut(features: nn.Module) -> str:
    """Qualified name of the last layer before a trailing max-pooling layer.

    For VGG and AlexNet ``features`` this is the ReLU after the last
    convolution (VGG16: conv5_3, stride 16).
    """
    leaves = flatten_layers(features)
    last = len(leaves) - 1
    if last > 0 and isinstance(leaves[last][1], nn.MaxPool2d):
        last -= 1
    return leaves[last][0]


# Seed of randomly initialised feature networks, so that their proposals are the same on every run.
RANDOM_FEATURES_SEED = 0


def torchvision_features(name: str, weights: str | None = None) -> nn.Sequential:
    """The ``features`` of a torchvision VGG or AlexNet model (see :data:`SEQUENTIAL_FEATURE_MODELS`).

    ``weights`` is a torchvision weights name (``"DEFAULT"``,
    ``"IMAGENET1K_V1"``, ...), downloaded by torchvision when not cached;
    ``None`` gives random initialisation from a fixed seed (the same network in every process,
    without building the classifier), leaving the global random state as it was.
    """
    import torch
    import torchvision

    if name not in SEQUENTIAL_FEATURE_MODELS:
        raise ValueError(
            f"unknown backbone {name!r}; torchvision backbones: {', '.join(SEQUENTIAL_FEATURE_MODELS)} "
            "(or pass an nn.Module)"
        )
    if weights is not None:
        return torchvision.models.get_model(name, weights=weights).features
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_FEATURES_SEED)
        if name.startswith("vgg"):
            from torchvision.models import vgg

            base = name.removesuffix("_bn")
            return vgg.make_layers(vgg.cfgs[_VGG_CONFIGS[base]], batch_norm=name.endswith("_bn"))
        return torchvision.models.get_model(name, weights=None).features
