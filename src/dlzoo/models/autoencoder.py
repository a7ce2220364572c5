"""Autoencoders (book, second seed): a 784-64-32-64-784 MLP and a convolutional variant."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Literal

import lightning.pytorch as pl
import torch
from torch import nn

from dlzoo.models.base import OptimizerName, SchedulerName, TaskModule, make_activation
from dlzoo.registry import register_model


def _conv_shapes(input_shape: Sequence[int], channels: Sequence[int]) -> tuple[int, int, int]:
    _c, h, w = input_shape
    factor = 2 ** len(channels)
    if h % factor or w % factor:
        raise ValueError(
            f"the conv autoencoder halves the image {len(channels)} times: height and width "
            f"must be multiples of {factor}, got {h}x{w}"
        )
    return channels[-1], h // factor, w // factor


@register_model("autoencoder")
class AutoEncoder(TaskModule):
    """Reconstructs its input through a small latent vector; ``encode()`` returns that vector.

    ``architecture="mlp"``: ``prod(input_shape) -> hidden_sizes -> latent_dim`` and back (the
    book's 784-64-32-64-784 with the defaults). ``"conv"``: stride-2 convolutions down to
    ``latent_dim`` and transposed convolutions back up. The task is always ``reconstruction``
    (its row of :data:`dlzoo.tasks.TASKS`: the loss, ``{train,val,test}_mse``, the predictions);
    :class:`~dlzoo.models.base.TaskModule` runs the steps. Under the ``dlzoo`` CLI,
    :class:`~dlzoo.callbacks.ReconstructionGrid` writes ``reconstructions.png`` (originals
    above, reconstructions below) after every validation epoch.

    Args:
        input_shape: ``(channels, height, width)`` (the DataModule supplies it).
        architecture: ``mlp`` or ``conv``.
        hidden_sizes: MLP widths between input and latent (conv: channels of each stride-2 unit).
        latent_dim: size of the code.
        activation: hidden non-linearity.
        output_activation: ``sigmoid`` for pixels in [0, 1] (use ``normalize: false`` on the
            data), or ``none`` for normalised inputs.
        loss: ``mse`` or ``bce`` (BCE needs targets in [0, 1] and is computed from logits).
        grid_images: how many images ``reconstructions.png`` shows (read by the callback).
        optimizer: ``adam``, ``adamw``, ``sgd`` or ``rmsprop``.
        lr: learning rate.
        weight_decay: L2 penalty.
        momentum: SGD/RMSprop momentum.
        lr_scheduler: as in :class:`~dlzoo.models.base.TaskModule`.
        lr_step_size: see ``lr_scheduler``.
        lr_gamma: see ``lr_scheduler``.
    """

    fixed_task = "reconstruction"

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 28, 28),
        architecture: Literal["mlp", "conv"] = "mlp",
        hidden_sizes: Sequence[int] = (64,),
        latent_dim: int = 32,
        activation: Literal["relu", "gelu", "silu", "tanh", "leaky_relu", "elu"] = "relu",
        output_activation: Literal["sigmoid", "none"] = "sigmoid",
        loss: Literal["mse", "bce"] = "mse",
        grid_images: int = 8,
        optimizer: OptimizerName = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        lr_scheduler: SchedulerName = "none",
        lr_step_size: int = 10,
        lr_gamma: float = 0.1,
    ) -> None:
        super().__init__(
            optimizer=optimizer,
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            lr_scheduler=lr_scheduler,
            lr_step_size=lr_step_size,
            lr_gamma=lr_gamma,
        )
        if architecture not in ("mlp", "conv"):
            raise ValueError(f"architecture must be mlp or conv, got {architecture!r}")
        if loss not in ("mse", "bce"):
            raise ValueError(f"loss must be mse or bce, got {loss!r}")
        if output_activation not in ("sigmoid", "none"):
            raise ValueError(
                f"output_activation must be sigmoid or none, got {output_activation!r}"
            )
        if loss == "bce" and output_activation != "sigmoid":
            raise ValueError(
                "loss='bce' reconstructs pixels in [0, 1]: use output_activation=sigmoid"
            )
        self.input_shape = tuple(input_shape)
        if architecture == "mlp":
            self.encoder, self.decoder = self._mlp(hidden_sizes, latent_dim, activation)
        else:
            self.encoder, self.decoder = self._conv(hidden_sizes, latent_dim, activation)

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

    # ------------------------------------------------------------------------------- the model
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent vectors ``(N, latent_dim)`` of a batch of inputs."""
        return self.encoder(x)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        out = self.decoder(z)
        return torch.sigmoid(out) if self.hparams.output_activation == "sigmoid" else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction of ``x``, same shape."""
        return self.decode(self.encode(x))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The decoder's raw output (before the output activation): what the loss takes."""
        return self.decode_logits(self.encode(x))

    # ------------------------------------------------------------------------------ Lightning
    def predict_outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The code, the reconstruction and its per-row mean squared error."""
        latent = self.encode(x)
        reconstruction = self.decode(latent)
        error = (reconstruction.float() - x.float()).pow(2).flatten(1).mean(dim=1)
        return {"latent": latent, "mse": error, "reconstruction": reconstruction}

    def configure_callbacks(self) -> list[pl.Callback]:
        from dlzoo.callbacks import ReconstructionGrid  # plotting stays out of the model file

        return [ReconstructionGrid()]
