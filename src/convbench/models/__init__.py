"""Our VGG, ResNet and ResNeXt, built by name from params.yaml sections (see :mod:`.registry`)."""

from convbench.families import FAMILIES, model_config
from convbench.models.registry import create_model, list_models
from convbench.models.summary import ModelSummary, summarize

__all__ = ["FAMILIES", "ModelSummary", "create_model", "list_models", "model_config", "summarize"]
