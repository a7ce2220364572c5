"""dlzoo models: TaskModules, each training one family's network (:mod:`dlzoo.networks`) and
registered by name (see ``dlzoo.list_models()``); ``TaskModule(network=...)`` trains any other."""

from dlzoo.models.autoencoder import AutoEncoder
from dlzoo.models.base import ClassificationModule, Predictor, TaskModule
from dlzoo.models.convnet import ConvNet
from dlzoo.models.ffn import FeedForwardNet
from dlzoo.models.finetune import FineTuneClassifier
from dlzoo.models.rnn import ImprovedRNN, RNNClassifier
from dlzoo.models.tabm import TabMNet
from dlzoo.models.text_encoder import TextEncoderClassifier
from dlzoo.models.transformer import TransformerClassifier

__all__ = [
    "AutoEncoder",
    "ClassificationModule",
    "ConvNet",
    "FeedForwardNet",
    "FineTuneClassifier",
    "ImprovedRNN",
    "Predictor",
    "RNNClassifier",
    "TabMNet",
    "TaskModule",
    "TextEncoderClassifier",
    "TransformerClassifier",
]
