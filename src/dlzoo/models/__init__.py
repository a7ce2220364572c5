"""dlzoo models: one file per family, each registered by name (see ``dlzoo.list_models()``)."""

from dlzoo.models.autoencoder import AutoEncoder
from dlzoo.models.base import ClassificationModule, TaskModule
from dlzoo.models.convnet import ConvNet
from dlzoo.models.ffn import FeedForwardNet
from dlzoo.models.finetune import FineTuneClassifier
from dlzoo.models.rnn import ImprovedRNN, RNNClassifier
from dlzoo.models.transformer import TransformerClassifier

__all__ = [
    "AutoEncoder",
    "ClassificationModule",
    "ConvNet",
    "FeedForwardNet",
    "FineTuneClassifier",
    "ImprovedRNN",
    "RNNClassifier",
    "TaskModule",
    "TransformerClassifier",
]
