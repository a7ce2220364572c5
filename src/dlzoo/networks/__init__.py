"""dlzoo's networks: plain ``torch.nn.Module``s, one file per family, no Lightning.

Each takes its sizes and ``num_outputs`` and returns logits, so it trains in a plain PyTorch
loop as well as inside :class:`dlzoo.models.TaskModule` (which the registered dlzoo models are:
``FeedForwardNet`` is a TaskModule holding a :class:`FeedForwardNetwork`).
"""

from dlzoo.networks.autoencoder import AutoEncoderNetwork
from dlzoo.networks.convnet import ConvNetwork
from dlzoo.networks.ffn import FeedForwardNetwork
from dlzoo.networks.rnn import ImprovedRNNNetwork, PaddedLSTM, RNNNetwork
from dlzoo.networks.tabm import TabMNetwork
from dlzoo.networks.transformer import TransformerNetwork


def __getattr__(name: str) -> type:
    if name == "FineTuneNetwork":  # torchvision and timm load only when asked for
        from dlzoo.networks.finetune import FineTuneNetwork

        return FineTuneNetwork
    if name == "TextEncoderNetwork":  # transformers loads only when asked for
        from dlzoo.networks.text_encoder import TextEncoderNetwork

        return TextEncoderNetwork
    raise AttributeError(f"module 'dlzoo.networks' has no attribute {name!r}")


__all__ = [
    "AutoEncoderNetwork",
    "ConvNetwork",
    "FeedForwardNetwork",
    "FineTuneNetwork",
    "ImprovedRNNNetwork",
    "PaddedLSTM",
    "RNNNetwork",
    "TabMNetwork",
    "TextEncoderNetwork",
    "TransformerNetwork",
]
