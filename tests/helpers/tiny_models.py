"""A model with no ``num_features`` argument, to prove the CLI skips links a model lacks."""

import torch
from torch import nn

from dlzoo.models.base import ClassificationModule


class LazyWidthNet(ClassificationModule):
    def __init__(self, num_classes: int = 2, hidden: int = 8, **kwargs) -> None:
        super().__init__(num_classes=num_classes, **kwargs)
        self.net = nn.Sequential(
            nn.LazyLinear(hidden), nn.ReLU(), nn.Linear(hidden, self.num_outputs)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
