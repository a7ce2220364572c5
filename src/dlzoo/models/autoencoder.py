"""Autoencoders (book, second seed): a 784-64-32-64-784 MLP and a convolutional variant."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any, Literal

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

from dlzoo.models.base import (
    OptimizerName,
    SchedulerName,
    configure_optimizers,
    keep_own_hparams,
    log_parameter_counts,
    make_activation,
)
from dlzoo.registry import register_model
from dlzoo.tasks import TASKS, Task


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
class AutoEncoder(pl.LightningModule):
    """Reconstructs its input through a small latent vector; ``encode()`` returns that vector.

    ``architecture="mlp"``: ``prod(input_shape) -> hidden_sizes -> latent_dim`` and back (the
    book's 784-64-32-64-784 with the defaults). ``"conv"``: stride-2 convolutions down to
    ``latent_dim`` and transposed convolutions back up. Logs ``{train,val,test}_loss`` and
    ``val_mse``. Under the ``dlzoo`` CLI, :class:`~dlzoo.callbacks.ReconstructionGrid` writes
    ``reconstructions.png`` (originals above, reconstructions below) after every validation epoch.

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
        super().__init__()
        self.save_hyperparameters()
        keep_own_hparams(self)
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
        for stage in ("train", "val", "test"):
            setattr(self, f"{stage}_loss", MeanMetric())
        self.val_mse = MeanMetric()

    #: the task every instance has, known before one is built (the CLI's checkpoint monitor)
    fixed_task = "reconstruction"

    @property
    def task(self) -> Task:
        """Always the reconstruction row of the task table."""
        return TASKS["reconstruction"]

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

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Reconstruction loss from the decoder's raw output (before the output activation)."""
        logits, target = logits.float(), target.float()
        if self.hparams.loss == "bce":
            return F.binary_cross_entropy_with_logits(logits, target)
        if self.hparams.output_activation == "sigmoid":
            logits = torch.sigmoid(logits)
        return F.mse_loss(logits, target)

    # ------------------------------------------------------------------------------ Lightning
    def _step(self, batch: Any, stage: str) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        logits = self.decode_logits(self.encode(x))
        loss = self.loss(logits, x)
        getattr(self, f"{stage}_loss").update(loss.detach(), weight=len(x))
        if stage == "val":
            recon = torch.sigmoid(logits) if self.hparams.output_activation == "sigmoid" else logits
            self.val_mse.update(F.mse_loss(recon.float(), x.float()).detach(), weight=len(x))
        return loss

    def on_fit_start(self) -> None:
        log_parameter_counts(self)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "test")

    def _log_epoch(self, stage: str) -> None:
        metrics = {f"{stage}_loss": getattr(self, f"{stage}_loss")}
        if stage == "val":
            metrics["val_mse"] = self.val_mse
        if not metrics[f"{stage}_loss"].update_called:
            return
        for name, metric in metrics.items():
            self.log(name, metric.compute(), prog_bar=True, sync_dist=True)
            metric.reset()

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def predict_outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The code, the reconstruction and its per-row mean squared error."""
        latent = self.encode(x)
        reconstruction = self.decode(latent)
        error = (reconstruction.float() - x.float()).pow(2).flatten(1).mean(dim=1)
        return {"latent": latent, "mse": error, "reconstruction": reconstruction}

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> dict:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.predict_outputs(x)

    def configure_optimizers(self) -> Any:
        return configure_optimizers(self)

    def configure_callbacks(self) -> list[pl.Callback]:
        from dlzoo.callbacks import ReconstructionGrid  # plotting stays out of the model file

        return [ReconstructionGrid()]
