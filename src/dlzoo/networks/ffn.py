"""Feed-forward network for tabular data (book chapter 5, Listings 5-11 to 5-15); flattens images."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dlzoo.networks.layers import Activation, check_num_features, make_activation


class FeedForwardNetwork(nn.Module):
    """Fully connected layers: ``num_features -> hidden_sizes... -> num_outputs`` logits.

    Each hidden unit is ``Linear -> [BatchNorm] -> activation -> [Dropout]``; the book's network
    is ``hidden_sizes=(96, 192, 384)`` with ReLU.

    Args:
        num_features: width of a preprocessed row.
        num_outputs: width of the output (1 for a binary task, the classes, the targets).
        hidden_sizes: widths of the hidden layers.
        activation: non-linearity after each hidden layer.
        dropout: dropout probability after each hidden layer.
        input_dropout: dropout probability on the input features.
        batch_norm: batch normalisation before each activation.
    """

    def __init__(
        self,
        num_features: int,
        num_outputs: int,
        hidden_sizes: Sequence[int] = (96, 192, 384),
        activation: Activation = "relu",
        dropout: float = 0.0,
        input_dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        check_num_features(num_features)
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
        layers.append(nn.Linear(width, num_outputs))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))  # images (N, C, H, W) become rows
