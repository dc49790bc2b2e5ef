"""Decision models: DT embeddings and head over selectable sequence backbones."""

from .backbones import BACKBONES, build_backbone
from .decision import TOKEN_LAYOUTS, DecisionModel, build_model

__all__ = ["BACKBONES", "TOKEN_LAYOUTS", "DecisionModel", "build_backbone", "build_model"]
