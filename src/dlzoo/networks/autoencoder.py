"""Autoencoder networks (book, second seed): a 784-64-32-64-784 MLP and a convolutional variant."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from dlzoo.networks.layers import Activation, make_activation


def _conv_shapes(input_shape: Sequence[int], channels: Sequence[int]) -> tuple[int, int, int]:
    _c, h, w = input_shape
    factor = 2 ** len(channels)
    if h % factor or w % factor:
        raise ValueError(
            f"the conv autoencoder halves the image {len(channels)} times: height and width "
            f"must be multiples of {factor}, got {h}x{w}"
        )
    return channels[-1], h // factor, w // factor


class AutoEncoderNetwork(nn.Module):
    """An encoder to a small latent vector and a decoder back to the input's shape.

    ``forward`` returns the decoder's raw output (logits of pixels: apply a sigmoid for pixels
    in [0, 1]); ``encode`` the latent vector, ``decode`` the raw output of a latent vector.

    Args:
        input_shape: ``(channels, height, width)``.
        architecture: ``mlp`` (``prod(input_shape) -> hidden_sizes -> latent_dim`` and back: the
            book's 784-64-32-64-784 with the defaults) or ``conv`` (stride-2 convolutions down
            to ``latent_dim`` and transposed convolutions back up).
        hidden_sizes: MLP widths between input and latent (conv: channels of each stride-2 unit).
        latent_dim: size of the code.
        activation: hidden non-linearity.
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 28, 28),
        architecture: Literal["mlp", "conv"] = "mlp",
        hidden_sizes: Sequence[int] = (64,),
        latent_dim: int = 32,
        activation: Activation = "relu",
    ) -> None:
        super().__init__()
        if architecture not in ("mlp", "conv"):
            raise ValueError(f"architecture must be mlp or conv, got {architecture!r}")
        self.input_shape = tuple(input_shape)
        build = self._mlp if architecture == "mlp" else self._conv
        self.encoder, self.decoder = build(hidden_sizes, latent_dim, activation)

    def _mlp(self, hidden: Sequence[int], latent: int, act: str) -> tuple[nn.Module, nn.Module]:
        widths = [math.prod(self.input_shape), *hidden]
        encoder: list[nn.Module] = [nn.Flatten()]
        for a, b in itertools.pairwise(widths):
            encoder += [nn.Linear(a, b), make_activation(act)]
        encoder.append(nn.Linear(widths[-1], latent))
        decoder: list[nn.Module] = []
        back = [latent, *reversed(widths[1:])]
        for a, b in itertools.pairwise(back):
            decoder += [nn.Linear(a, b), make_activation(act)]
        decoder += [nn.Linear(back[-1], widths[0]), nn.Unflatten(1, self.input_shape)]
        return nn.Sequential(*encoder), nn.Sequential(*decoder)

    def _conv(self, channels: Sequence[int], latent: int, act: str) -> tuple[nn.Module, nn.Module]:
        c_last, h, w = _conv_shapes(self.input_shape, channels)
        widths = [self.input_shape[0], *channels]
        encoder: list[nn.Module] = []
        for a, b in itertools.pairwise(widths):
            encoder += [nn.Conv2d(a, b, 3, stride=2, padding=1), make_activation(act)]
        encoder += [nn.Flatten(), nn.Linear(c_last * h * w, latent)]
        decoder: list[nn.Module] = [
            nn.Linear(latent, c_last * h * w),
            make_activation(act),
            nn.Unflatten(1, (c_last, h, w)),
        ]
        back = list(reversed(widths))
        for i, (a, b) in enumerate(itertools.pairwise(back)):
            decoder.append(nn.ConvTranspose2d(a, b, 3, stride=2, padding=1, output_padding=1))
            if i < len(back) - 2:
                decoder.append(make_activation(act))
        return nn.Sequential(*encoder), nn.Sequential(*decoder)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent vectors ``(N, latent_dim)`` of a batch of inputs."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's raw output for latent vectors (before any output activation)."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))
