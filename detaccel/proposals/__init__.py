"""Region proposal generators: selective search, Edge Boxes, sliding windows, precomputed files and R²-CNN.

Build one by name (``build_generator("edge_boxes", max_boxes=1000)``) and
call ``generate(image)`` on an OpenCV BGR image; the result is a
:class:`Proposals` with inclusive pixel boxes, optional scores and timings.
"""

from detaccel.proposals.base import GeneratorBase, ImageId, ProposalGenerator, Proposals, RawProposals
from detaccel.proposals.image import to_bgr8
from detaccel.proposals.postprocess import DEDUPE_STEP, finalize_proposals
from detaccel.proposals.registry import (
    available_generators,
    build_from_config,
    build_generator,
    generator_class,
    generator_parameters,
    register_generator,
)

__all__ = [
    "DEDUPE_STEP",
    "GeneratorBase",
    "ImageId",
    "ProposalGenerator",
    "Proposals",
    "RawProposals",
    "available_generators",
    "build_from_config",
    "build_generator",
    "finalize_proposals",
    "generator_class",
    "generator_parameters",
    "register_generator",
    "to_bgr8",
]
