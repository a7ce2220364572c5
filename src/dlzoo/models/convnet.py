"""The convolutional model (book chapter 6): :class:`~dlzoo.networks.convnet.ConvNetwork`
trained by :class:`~dlzoo.models.base.TaskModule`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from dlzoo.models.base import TaskModule
from dlzoo.networks.convnet import PRESETS, ConvNetwork
from dlzoo.networks.layers import Activation
from dlzoo.registry import register_model


@register_model("convnet")
class ConvNet(TaskModule):
    """A :class:`~dlzoo.networks.convnet.ConvNetwork` for a task: conv units ``Conv ->
    [BatchNorm] -> activation -> pool``, flatten, then a dense head.

    ``ConvNet.from_preset("mnist")`` is the book's MNIST network (``cats_dogs`` its 4-unit one).

    Args:
        input_shape: ``(channels, height, width)`` of an input image (the DataModule supplies it).
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
        activation: Activation = "relu",
        conv_dropout: float = 0.0,
        global_pool: bool = False,
        head_sizes: Sequence[int] = (128,),
        dropout: float = 0.5,
        channels_last: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(network=None, num_classes=num_classes, **kwargs)
        self.network = ConvNetwork(
            input_shape, self.num_outputs, channels, kernel_size, padding, batch_norm, pool,
            activation, conv_dropout, global_pool, head_sizes, dropout, channels_last,
        )  # fmt: skip

    @classmethod
    def from_preset(cls, name: Literal["mnist", "cats_dogs"], **overrides: Any) -> ConvNet:
        """The book's network for ``name``, with any argument overridden."""
        if name not in PRESETS:
            raise ValueError(f"unknown ConvNet preset {name!r}; choose from {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


__all__ = ["PRESETS", "ConvNet"]
