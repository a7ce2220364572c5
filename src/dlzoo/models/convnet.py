"""Convolutional classifier (book chapter 6): conv units, then a fully connected head."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import nn

from dlzoo.models.base import TaskModule, make_activation
from dlzoo.registry import register_model

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


@register_model("convnet")
class ConvNet(TaskModule):
    """Conv units ``Conv -> [BatchNorm] -> activation -> pool``, flatten, then a dense head.

    The flatten width is computed from ``input_shape`` (the DataModule supplies it), so any image
    size works; ``global_pool`` averages each channel instead, for inputs of varying size.
    ``ConvNet.from_preset("mnist")`` is the book's MNIST network (``cats_dogs`` its 4-unit one).

    Args:
        input_shape: ``(channels, height, width)`` of an input image.
        num_classes: 2 for binary (one logit), more for multiclass; labels of a multi-label task.
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
        channels_last: run convolutions in NHWC layout (the default: a training step of the
            book's MNIST ConvNet is 1.1x faster on CPU, BENCHMARKS.md; and faster with mixed
            precision on GPUs). Checkpoints written before keep their NCHW layout.
        **kwargs: the task, optimiser, scheduler and L1 settings of :class:`TaskModule`.
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 28, 28),
        num_classes: int = 10,
        channels: Sequence[int] = (32, 64),
        kernel_size: int = 3,
        padding: int | None = None,
        batch_norm: bool = False,
        pool: Literal["max", "avg", "none"] = "max",
        activation: Literal["relu", "gelu", "silu", "tanh", "leaky_relu", "elu"] = "relu",
        conv_dropout: float = 0.0,
        global_pool: bool = False,
        head_sizes: Sequence[int] = (128,),
        dropout: float = 0.5,
        channels_last: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes=num_classes, **kwargs)
        if len(input_shape) != 3 or min(input_shape) < 1:
            raise ValueError(f"input_shape must be (channels, height, width), got {input_shape}")
        if pool not in ("max", "avg", "none"):
            raise ValueError(f"pool must be max, avg or none, got {pool!r}")
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
        head += [nn.Dropout(dropout), nn.Linear(flat, self.num_outputs)]
        self.head = nn.Sequential(*head)
        if channels_last:
            self.to(memory_format=torch.channels_last)

    @classmethod
    def from_preset(cls, name: Literal["mnist", "cats_dogs"], **overrides: Any) -> ConvNet:
        """The book's network for ``name``, with any argument overridden."""
        if name not in PRESETS:
            raise ValueError(f"unknown ConvNet preset {name!r}; choose from {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.head(self.features(x))
