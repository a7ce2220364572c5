"""The feed-forward model (book chapter 5): :class:`~dlzoo.networks.ffn.FeedForwardNetwork`
trained by :class:`~dlzoo.models.base.TaskModule`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dlzoo.models.base import TaskModule
from dlzoo.networks.ffn import FeedForwardNetwork
from dlzoo.networks.layers import Activation
from dlzoo.registry import register_model


@register_model("ffn")
class FeedForwardNet(TaskModule):
    """A :class:`~dlzoo.networks.ffn.FeedForwardNetwork` for a task: the book's network is
    ``hidden_sizes=(96, 192, 384)`` with ReLU; its regularised variants add ``l1_lambda``,
    ``weight_decay`` (L2) and ``dropout``.

    Args:
        num_features: width of a preprocessed row (the DataModule supplies it).
        num_classes: 2 for binary (one logit), more for multiclass; labels of a multi-label task.
        hidden_sizes: widths of the hidden layers.
        activation: non-linearity after each hidden layer.
        dropout: dropout probability after each hidden layer.
        input_dropout: dropout probability on the input features.
        batch_norm: batch normalisation before each activation.
        **kwargs: the task, optimiser, scheduler and L1 settings of :class:`TaskModule`.
    """

    def __init__(
        self,
        num_features: int,
        num_classes: int = 2,
        hidden_sizes: Sequence[int] = (96, 192, 384),
        activation: Activation = "relu",
        dropout: float = 0.0,
        input_dropout: float = 0.0,
        batch_norm: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(network=None, num_classes=num_classes, **kwargs)
        self.network = FeedForwardNetwork(
            num_features, self.num_outputs, hidden_sizes, activation, dropout, input_dropout,
            batch_norm,
        )  # fmt: skip
