"""What a run leaves in its directory: the book's plots at the end of fit, the autoencoder's
reconstructions after each validation epoch. Observers only."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning.pytorch.callbacks import Callback
from matplotlib.figure import Figure
from torchmetrics.classification import MulticlassConfusionMatrix
from torchmetrics.functional import classification as class_metrics
from torchvision.utils import make_grid

from dlzoo.data.base import output_names
from dlzoo.models.base import TaskModule

log = logging.getLogger(__name__)


def run_dir(trainer: pl.Trainer) -> Path:
    """The run's directory: the first logger's ``log_dir``, else ``default_root_dir``.

    Call it on every rank: ``trainer.log_dir`` is a broadcast under DDP.
    """
    return Path(trainer.log_dir or trainer.default_root_dir)


@torch.inference_mode()
def collect_outputs(
    pl_module: pl.LightningModule,
    loader: torch.utils.data.DataLoader,
    datamodule: pl.LightningDataModule | None = None,
    max_rows: int | None = None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """A model's predict outputs (``predict_outputs``) and the targets over a labelled loader,
    in eval mode (its first batches up to ``max_rows`` rows, if given). Batches go through
    ``datamodule.on_after_batch_transfer`` (MNIST scales there), as in a loop."""
    was_training = pl_module.training
    pl_module.eval()
    outputs: dict[str, list[torch.Tensor]] = {}
    targets = []
    try:
        for batch in loader:
            batch = move_data_to_device(batch, pl_module.device)
            if datamodule is not None:
                batch = datamodule.on_after_batch_transfer(batch, 0)
            for key, value in pl_module.predict_outputs(batch[0]).items():
                outputs.setdefault(key, []).append(value.cpu())
            targets.append(batch[1].cpu())
            if max_rows is not None and sum(len(t) for t in targets) >= max_rows:
                break
    finally:
        pl_module.train(was_training)
    return {k: torch.cat(v) for k, v in outputs.items()}, torch.cat(targets)


def collect_probabilities(
    pl_module: pl.LightningModule,
    loader: torch.utils.data.DataLoader,
    datamodule: pl.LightningDataModule | None = None,
    max_rows: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities and targets of a classifier over a labelled loader, in eval mode."""
    outputs, targets = collect_outputs(pl_module, loader, datamodule, max_rows)
    return outputs["probs"], targets


class RunArtifacts(Callback):
    """At the end of ``fit``, write the book's plots into the run directory (rank zero only).

    ``loss.png``: train and val loss per epoch. ``roc.png`` (binary): ROC curves of the train and
    val splits with their AUC in the legend, as the book plots them. ``confusion_matrix.png``
    (binary, multiclass): on the val split. The train curve is drawn from a shuffled sample of
    at most ``roc_train_rows`` training rows (``None``: all). ``predicted_vs_actual.png`` and
    ``residuals.png`` (regression, option ``predictions``): on the val split, in the target's
    units. The curves use the final weights; the per-epoch history is kept in checkpoints, so a
    resumed run plots every epoch.
    """

    def __init__(
        self,
        loss: bool = True,
        roc: bool = True,
        confusion_matrix: bool = True,
        predictions: bool = True,
        roc_train_rows: int | None = 5000,
    ) -> None:
        self.loss, self.roc, self.confusion_matrix = loss, roc, confusion_matrix
        self.roc_train_rows = roc_train_rows
        self.predictions = predictions
        self.history: dict[str, list[float]] = {"epoch": [], "train_loss": [], "val_loss": []}

    # Lightning runs a callback's on_train_epoch_end before the module's, where the epoch's
    # train loss is logged; so an epoch is recorded when the next one starts, or training ends.
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._record(trainer, trainer.current_epoch - 1)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._record(trainer, trainer.current_epoch - 1)  # the last completed epoch

    def _record(self, trainer: pl.Trainer, epoch: int) -> None:
        metrics = trainer.callback_metrics
        if epoch < 0 or epoch in self.history["epoch"] or "train_loss" not in metrics:
            return  # nothing trained yet, already recorded, or a fresh process after a resume
        self.history["epoch"].append(epoch)
        for key in ("train_loss", "val_loss"):
            value = metrics.get(key)
            self.history[key].append(float(value) if value is not None else float("nan"))

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = state_dict["history"]

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        out = run_dir(trainer)  # every rank: a collective under DDP
        if not trainer.is_global_zero or trainer.interrupted:
            return
        out.mkdir(parents=True, exist_ok=True)
        if self.loss and self.history["epoch"]:
            self._plot_loss(out / "loss.png")
        datamodule = trainer.datamodule
        if datamodule is None or not isinstance(pl_module, TaskModule):
            return
        task = pl_module.task
        if task.name == "reconstruction":
            return
        if task.name == "regression":
            if self.predictions:
                outputs, targets = collect_outputs(
                    pl_module, datamodule.val_dataloader(), datamodule
                )
                predicted, actual = task.scores(outputs, targets, pl_module.hparams)
                names = pl_module.hparams.get("target_names") or None
                self._plot_regression(out, predicted, actual, names)
            log.info("plots written to %s", out)
            return
        if not task.classification or not (self.roc or self.confusion_matrix):
            return
        val_probs, val_targets = collect_probabilities(
            pl_module, datamodule.val_dataloader(), datamodule
        )
        classes = output_names(datamodule, pl_module)
        binary = task.name == "binary"
        if self.roc and binary:
            curves = {
                # a shuffled sample of at most roc_train_rows: predicting every training row
                # again costs a pretrained encoder a quarter of its epoch
                "train": collect_probabilities(
                    pl_module, datamodule.train_dataloader(), datamodule, self.roc_train_rows
                ),
                "val": (val_probs, val_targets),
            }
            self._plot_roc(out / "roc.png", curves)
        if self.confusion_matrix:
            if binary:
                matrix = class_metrics.binary_confusion_matrix(val_probs, val_targets)
            else:
                matrix = class_metrics.multiclass_confusion_matrix(
                    val_probs, val_targets, val_probs.shape[1]
                )
            self._plot_confusion(out / "confusion_matrix.png", matrix, classes)
        log.info("plots written to %s", out)

    @staticmethod
    def _plot_regression(
        out: Path, predicted: torch.Tensor, actual: torch.Tensor, names: list[str] | None
    ) -> None:
        """``predicted_vs_actual.png`` and ``residuals.png`` on the val split, one panel a
        target, in the target's units."""
        predicted = predicted.reshape(len(predicted), -1).numpy()
        actual = actual.reshape(len(actual), -1).numpy()
        count = predicted.shape[1]
        labels = names if names and len(names) == count else [f"target {i}" for i in range(count)]
        for kind in ("predicted_vs_actual", "residuals"):
            fig = Figure(figsize=(5 * count, 4.6))
            for i, ax in enumerate(np.atleast_1d(fig.subplots(1, count))):
                x, y = actual[:, i], predicted[:, i]
                if kind == "residuals":
                    ax.scatter(y, y - x, s=4, alpha=0.4)
                    ax.axhline(0, color="grey", linestyle="--", linewidth=1)
                    ax.set(xlabel="predicted", ylabel="predicted - actual")
                else:
                    ax.scatter(x, y, s=4, alpha=0.4)
                    low, high = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
                    ax.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1)
                    ax.set(xlabel="actual", ylabel="predicted")
                ax.set_title(f"{labels[i]} (val)")
            fig.savefig(out / f"{kind}.png", dpi=100, bbox_inches="tight")

    def _plot_loss(self, path: Path) -> None:
        fig = Figure(figsize=(6, 4))
        ax = fig.subplots()
        for key in ("train_loss", "val_loss"):
            ax.plot(self.history["epoch"], self.history[key], label=key.replace("_", " "))
        ax.set(xlabel="epoch", ylabel="loss", title="Loss per epoch")
        ax.legend()
        fig.savefig(path, dpi=100, bbox_inches="tight")

    @staticmethod
    def _plot_roc(path: Path, curves: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        fig = Figure(figsize=(5, 5))
        ax = fig.subplots()
        for name, (probs, targets) in curves.items():
            fpr, tpr, _ = class_metrics.binary_roc(probs, targets)
            auc = class_metrics.binary_auroc(probs, targets).item()
            ax.plot(fpr.numpy(), tpr.numpy(), label=f"{name} (AUC = {auc:.3f})")
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
        ax.legend(loc="lower right")
        fig.savefig(path, dpi=100, bbox_inches="tight")

    @staticmethod
    def _plot_confusion(path: Path, matrix: torch.Tensor, classes: list[str] | None) -> None:
        n = matrix.shape[0]
        labels = classes if classes and len(classes) == n else [str(i) for i in range(n)]
        fig = Figure(figsize=(1.6 + 0.7 * n, 1.2 + 0.7 * n))
        ax = fig.subplots()
        # torchmetrics draws it: the count in each cell, the class names on the axes. It hands
        # matplotlib a tensor, whose __array__ lacks numpy 2's copy argument (numpy warns)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="__array__ implementation doesn't accept")
            confusion = MulticlassConfusionMatrix(num_classes=n)
            confusion.plot(matrix, ax=ax, labels=labels, cmap="Blues")
        fig.colorbar(ax.images[0], ax=ax, fraction=0.046)
        ax.set_title("Confusion matrix (val)")
        fig.savefig(path, dpi=100, bbox_inches="tight")


class ReconstructionGrid(Callback):
    """``reconstructions.png`` in the run directory after every validation epoch: a batch of
    validation inputs (top row) and a model's reconstructions of them (bottom row). The
    autoencoder adds it to its runs (``configure_callbacks``); ``grid_images`` of the model's
    hyperparameters says how many images."""

    def __init__(self) -> None:
        self.images: torch.Tensor | None = None

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if batch_idx == 0:
            x = batch[0] if isinstance(batch, tuple | list) else batch
            self.images = x[: pl_module.hparams.get("grid_images", 8)].detach()

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.images is None:
            return
        out = run_dir(trainer)  # every rank: a collective under DDP
        if trainer.is_global_zero:
            out.mkdir(parents=True, exist_ok=True)
            save_reconstructions(pl_module, self.images, out / "reconstructions.png")


@torch.no_grad()
def save_reconstructions(model: pl.LightningModule, images: torch.Tensor, path: Path) -> None:
    """A PNG with ``images`` in the top row and ``model``'s reconstructions below."""
    was_training = model.training
    model.eval()
    recon = model(images).float()
    model.train(was_training)
    grid = make_grid(
        torch.cat([images.float(), recon]).cpu(), nrow=len(images), normalize=True, scale_each=True
    )
    fig = Figure(figsize=(1.2 * len(images), 2.6))
    ax = fig.subplots()
    ax.imshow(grid.permute(1, 2, 0).numpy())
    ax.set_axis_off()
    ax.set_title("originals (top) and reconstructions (bottom)")
    fig.savefig(path, dpi=100, bbox_inches="tight")


__all__ = [
    "ReconstructionGrid",
    "RunArtifacts",
    "collect_outputs",
    "collect_probabilities",
    "run_dir",
    "save_reconstructions",
]
