"""The autoencoder model (book, second seed): :class:`~dlzoo.networks.autoencoder.
AutoEncoderNetwork` trained by :class:`~dlzoo.models.base.TaskModule` for ``reconstruction``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from torch import nn

from dlzoo.models.base import TaskModule
from dlzoo.networks.autoencoder import AutoEncoderNetwork
from dlzoo.networks.layers import Activation
from dlzoo.registry import register_model
from dlzoo.tasks import get_task


def reconstruction_outputs(
    network: AutoEncoderNetwork, x: torch.Tensor, hparams: Mapping[str, Any]
) -> dict[str, torch.Tensor]:
    """The code, the reconstruction and its per-row mean squared error (what predict writes)."""
    latent = network.encode(x)
    reconstruction = get_task("reconstruction").outputs(network.decode(latent).float(), hparams)
    reconstruction = reconstruction["reconstruction"]
    error = (reconstruction - x.float()).pow(2).flatten(1).mean(dim=1)
    return {"latent": latent, "mse": error, "reconstruction": reconstruction}


class ReconstructionPredictor(nn.Module):
    """An autoencoder network and the reconstruction head, as ``dlzoo export`` traces it."""

    def __init__(self, network: AutoEncoderNetwork, hparams: Mapping[str, Any]) -> None:
        super().__init__()
        self.network, self.hparams = network, dict(hparams)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return reconstruction_outputs(self.network, x, self.hparams)


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
        **kwargs: the optimiser, scheduler and L1 settings of :class:`TaskModule`; its task
            settings (``num_classes``, ``threshold`` ...) do not apply and are refused.
    """

    fixed_task = "reconstruction"

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 28, 28),
        architecture: Literal["mlp", "conv"] = "mlp",
        hidden_sizes: Sequence[int] = (64,),
        latent_dim: int = 32,
        activation: Activation = "relu",
        output_activation: Literal["sigmoid", "none"] = "sigmoid",
        loss: Literal["mse", "bce"] = "mse",
        grid_images: int = 8,
        **kwargs: Any,
    ) -> None:
        super().__init__(network=None, **kwargs)
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
        self.network = AutoEncoderNetwork(
            input_shape, architecture, hidden_sizes, latent_dim, activation
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent vectors ``(N, latent_dim)`` of a batch of inputs."""
        return self.network.encode(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Reconstructions of latent vectors (with the output activation)."""
        return get_task("reconstruction").outputs(self.network.decode(z), self.hparams)[
            "reconstruction"
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction of ``x``, same shape."""
        return self.decode(self.encode(x))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The decoder's raw output (before the output activation): what the loss takes."""
        return self.network(x)

    def predict_outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The code, the reconstruction and its per-row mean squared error."""
        return reconstruction_outputs(self.network, x, self.hparams)

    def predictor(self) -> nn.Module:
        return ReconstructionPredictor(self.exportable_network(), self.hparams)

    def configure_callbacks(self) -> list[pl.Callback]:
        from dlzoo.callbacks import ReconstructionGrid  # plotting stays out of the model file

        return [ReconstructionGrid()]
