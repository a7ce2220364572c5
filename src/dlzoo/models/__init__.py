"""dlzoo models: one file per family, each registered by name (see ``dlzoo.list_models()``)."""

from dlzoo.models.base import ClassificationModule
from dlzoo.models.ffn import FeedForwardNet

__all__ = ["ClassificationModule", "FeedForwardNet"]
