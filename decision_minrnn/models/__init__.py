"""Decision models: DT embeddings and head over selectable sequence backbones."""

from .backbones import BACKBONE_CLASSES, Backbone, build_backbone, register_backbone, unregister_backbone
from .decision import TOKEN_LAYOUTS, DecisionModel, build_model

__all__ = [
    "BACKBONE_CLASSES",
    "TOKEN_LAYOUTS",
    "Backbone",
    "DecisionModel",
    "build_backbone",
    "build_model",
    "register_backbone",
    "unregister_backbone",
]
