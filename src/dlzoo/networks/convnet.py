"""Convolutional network (book chapter 6): conv units, then a fully connected head."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import nn

from dlzoo.networks.layers import Activation, make_activation

#: the book's networks: Listing 6-4 (MNIST, 2 conv units) and Listing 6-12 (Cats vs Dogs, 4 units)
PRESETS: dict[str, dict[str, Any]] = {
    "mnist": {
        "input_shape": (1, 28, 28),
        "num_classes": 10,
        "channels": (32, 64),
        "head_sizes": (128,),
        "dropout": 0.5,
    },
    "cats_dogs": {
        "input_shape": (3, 224, 224),
        "num_classes": 2,
        "channels": (32, 64, 128, 128),
        "head_sizes": (512,),
        "dropout": 0.5,
    },
}


class ConvNetwork(nn.Module):
    """Conv units ``Conv -> [BatchNorm] -> activation -> pool``, flatten, then a dense head.

    The flatten width is computed from ``input_shape``, so any image size works; ``global_pool``
    averages each channel instead, for inputs of varying size.

    Args:
        input_shape: ``(channels, height, width)`` of an input image.
        num_outputs: width of the output (1 for a binary task, the classes, the targets).
        channels: output channels of each conv unit.
        kernel_size: conv kernel size; ``padding`` keeps the size ("same") when ``None``.
        padding: conv padding in pixels.
        batch_norm: batch normalisation after each conv.
        pool: ``max``/``avg`` 2x2 pooling after each unit, or ``none``.
        activation: non-linearity of conv units and head.
        conv_dropout: 2-D dropout after each unit.
        global_pool: average each channel over the image before the head.
        head_sizes: hidden widths of the dense head.
        dropout: dropout before each dense layer of the head.
        channels_last: run convolutions in NHWC layout (a training step of the book's MNIST
            network is 1.1x faster on CPU, BENCHMARKS.md; faster with mixed precision on GPUs).
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        channels: Sequence[int] = (32, 64),
        kernel_size: int = 3,
        padding: int | None = None,
        batch_norm: bool = False,
        pool: Literal["max", "avg", "none"] = "max",
        activation: Activation = "relu",
        conv_dropout: float = 0.0,
        global_pool: bool = False,
        head_sizes: Sequence[int] = (128,),
        dropout: float = 0.5,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        if len(input_shape) != 3 or min(input_shape) < 1:
            raise ValueError(f"input_shape must be (channels, height, width), got {input_shape}")
        if pool not in ("max", "avg", "none"):
            raise ValueError(f"pool must be max, avg or none, got {pool!r}")
        self.channels_last = channels_last
        padding = kernel_size // 2 if padding is None else padding
        layers: list[nn.Module] = []
        width = input_shape[0]
        for out in channels:
            layers.append(nn.Conv2d(width, out, kernel_size, padding=padding, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out))
            layers.append(make_activation(activation))
            if pool != "none":
                layers.append(nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2))
            if conv_dropout > 0:
                layers.append(nn.Dropout2d(conv_dropout))
            width = out
        if global_pool:
            layers.append(nn.AdaptiveAvgPool2d(1))
        layers.append(nn.Flatten())
        self.features = nn.Sequential(*layers)
        with torch.no_grad():  # the flatten width, from a dummy image of the configured size
            try:
                flat = self.features(torch.zeros(1, *input_shape)).shape[1]
            except RuntimeError as err:
                raise ValueError(
                    f"input_shape {tuple(input_shape)} is too small for {len(channels)} conv "
                    f"units: {err}"
                ) from None
        head: list[nn.Module] = []
        for hidden in head_sizes:
            head += [nn.Dropout(dropout), nn.Linear(flat, hidden), make_activation(activation)]
            flat = hidden
        head += [nn.Dropout(dropout), nn.Linear(flat, num_outputs)]
        self.head = nn.Sequential(*head)
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.head(self.features(x))
