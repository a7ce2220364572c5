"""dlzoo models: one file per family, each registered by name (see ``dlzoo.list_models()``)."""

from dlzoo.models.autoencoder import AutoEncoder
from dlzoo.models.base import ClassificationModule
from dlzoo.models.convnet import ConvNet
from dlzoo.models.ffn import FeedForwardNet
from dlzoo.models.finetune import FineTuneClassifier

__all__ = ["AutoEncoder", "ClassificationModule", "ConvNet", "FeedForwardNet", "FineTuneClassifier"]
