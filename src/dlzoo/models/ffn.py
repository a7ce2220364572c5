"""Feed-forward network for tabular data (book chapter 5, Listings 5-11 to 5-15); flattens images."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import nn

from dlzoo.models.base import TaskModule, make_activation
from dlzoo.registry import register_model


@register_model("ffn")
class FeedForwardNet(TaskModule):
    """Fully connected layers: ``num_features -> hidden_sizes... -> logits``.

    Each hidden unit is ``Linear -> [BatchNorm] -> activation -> [Dropout]``. The book's network is
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
        activation: Literal["relu", "gelu", "silu", "tanh", "leaky_relu", "elu"] = "relu",
        dropout: float = 0.0,
        input_dropout: float = 0.0,
        batch_norm: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes=num_classes, **kwargs)
        if not isinstance(num_features, int) or num_features < 1:
            raise ValueError(
                f"num_features must be a positive int, got {num_features!r}: the dlzoo CLI links it "
                "from the DataModule's num_features; from Python pass dm.num_features"
            )
        layers: list[nn.Module] = [nn.Dropout(input_dropout)] if input_dropout > 0 else []
        width = num_features
        for hidden in hidden_sizes:
            layers.append(nn.Linear(width, hidden, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden))
            layers.append(make_activation(activation))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = hidden
        layers.append(nn.Linear(width, self.num_outputs))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))  # images (N, C, H, W) become rows
