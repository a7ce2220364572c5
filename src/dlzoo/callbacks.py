"""Callbacks the ``dlzoo`` CLI adds to every run: plots and predictions on disk, exact resumes,
checkpoints written atomically."""

from __future__ import annotations

import contextlib
import csv
import logging
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning.pytorch.callbacks import BasePredictionWriter, Callback, TQDMProgressBar
from lightning.pytorch.plugins import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_info
from matplotlib.figure import Figure
from torchmetrics.functional.classification import (
    binary_auroc,
    binary_confusion_matrix,
    binary_roc,
    multiclass_confusion_matrix,
)
from torchvision.utils import make_grid

from dlzoo.data.base import DataModule
from dlzoo.models.base import TaskModule

log = logging.getLogger(__name__)


def run_dir(trainer: pl.Trainer) -> Path:
    """The run's directory: the first logger's ``log_dir``, else ``default_root_dir``.

    Call it on every rank: ``trainer.log_dir`` is a broadcast under DDP.
    """
    return Path(trainer.log_dir or trainer.default_root_dir)


class EpochSeed(Callback):
    """Re-seed torch, numpy and ``random`` at the start of every training epoch.

    The seed is a function of the run's seed (``seed_everything``), the epoch and the rank, so an
    epoch's dropout masks and augmentations do not depend on what ran before it: a fit resumed from
    ``last.ckpt`` continues exactly as the uninterrupted run would have.
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        base = self.seed if self.seed is not None else int(os.environ.get("PL_GLOBAL_SEED", 0))
        seed = (base + 1_000_003 * trainer.current_epoch + 7919 * trainer.global_rank) % 2**32
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)


@torch.inference_mode()
def collect_outputs(
    pl_module: pl.LightningModule,
    loader: torch.utils.data.DataLoader,
    datamodule: pl.LightningDataModule | None = None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """A model's predict outputs (``predict_outputs``) and the targets over a labelled loader,
    in eval mode. Batches go through ``datamodule.on_after_batch_transfer`` (MNIST scales
    there), as in a loop."""
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
    finally:
        pl_module.train(was_training)
    return {k: torch.cat(v) for k, v in outputs.items()}, torch.cat(targets)


def collect_probabilities(
    pl_module: pl.LightningModule,
    loader: torch.utils.data.DataLoader,
    datamodule: pl.LightningDataModule | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities and targets of a classifier over a labelled loader, in eval mode."""
    outputs, targets = collect_outputs(pl_module, loader, datamodule)
    return outputs["probs"], targets


class RunArtifacts(Callback):
    """At the end of ``fit``, write the book's plots into the run directory (rank zero only).

    ``loss.png``: train and val loss per epoch. ``roc.png`` (binary): ROC curves of the train and
    val splits with their AUC in the legend, as the book plots them. ``confusion_matrix.png``
    (binary, multiclass): on the val split. ``predicted_vs_actual.png`` and ``residuals.png``
    (regression, option ``predictions``): on the val split, in the target's units. The curves use
    the final weights; the per-epoch history is kept in checkpoints, so a resumed run plots every
    epoch.
    """

    def __init__(
        self,
        loss: bool = True,
        roc: bool = True,
        confusion_matrix: bool = True,
        predictions: bool = True,
    ) -> None:
        self.loss, self.roc, self.confusion_matrix = loss, roc, confusion_matrix
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
                "train": collect_probabilities(
                    pl_module, datamodule.train_dataloader(), datamodule
                ),
                "val": (val_probs, val_targets),
            }
            self._plot_roc(out / "roc.png", curves)
        if self.confusion_matrix:
            if binary:
                matrix = binary_confusion_matrix(val_probs, val_targets)
            else:
                matrix = multiclass_confusion_matrix(val_probs, val_targets, val_probs.shape[1])
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
            fpr, tpr, _ = binary_roc(probs, targets)
            auc = binary_auroc(probs, targets).item()
            ax.plot(fpr.numpy(), tpr.numpy(), label=f"{name} (AUC = {auc:.3f})")
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
        ax.legend(loc="lower right")
        fig.savefig(path, dpi=100, bbox_inches="tight")

    @staticmethod
    def _plot_confusion(path: Path, matrix: torch.Tensor, classes: list[str] | None) -> None:
        n = matrix.shape[0]
        labels = classes if classes and len(classes) == n else [str(i) for i in range(n)]
        fig = Figure(figsize=(1.2 + 0.6 * n, 1.0 + 0.6 * n))
        ax = fig.subplots()
        image = ax.imshow(matrix.numpy(), cmap="Blues")
        fig.colorbar(image, ax=ax, fraction=0.046)
        half = matrix.max().item() / 2
        for i in range(n):
            for j in range(n):
                value = int(matrix[i, j])
                ax.text(
                    j,
                    i,
                    str(value),
                    ha="center",
                    va="center",
                    color="white" if value > half else "black",
                )
        ax.set(
            xticks=range(n),
            yticks=range(n),
            xticklabels=labels,
            yticklabels=labels,
            xlabel="predicted",
            ylabel="true",
            title="Confusion matrix (val)",
        )
        fig.savefig(path, dpi=100, bbox_inches="tight")


class PredictionWriter(BasePredictionWriter):
    """Write ``dlzoo predict`` results to a CSV: row, class probabilities, predicted label.

    Args:
        output: the CSV to write; default ``predictions.csv`` in ``trainer.default_root_dir``.
            Under DDP each rank writes its share to ``<stem>_rank<N>.csv``.
    """

    def __init__(self, output: str | None = None) -> None:
        super().__init__(write_interval="epoch")
        self.output = output

    def path(self, trainer: pl.Trainer) -> Path:
        """``output``, else ``predictions.csv`` in ``default_root_dir`` (beside, never inside, the
        training runs under ``lightning_logs``)."""
        return (
            Path(self.output) if self.output else Path(trainer.default_root_dir) / "predictions.csv"
        )

    def write_on_epoch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        predictions: Any,
        batch_indices: Any,
    ) -> None:
        path = self.path(trainer)
        if not predictions or not isinstance(predictions[0], dict):
            return
        if not isinstance(pl_module, TaskModule):
            return  # not a dlzoo model's predictions: nothing we know how to write
        task = pl_module.task
        outputs = {key: torch.cat([p[key] for p in predictions]) for key in predictions[0]}
        decoded = task.decode(outputs, output_names(trainer.datamodule, pl_module))
        header, cells = task.csv(decoded)
        # which dataset rows these are (this rank's share under DDP), then which file rows
        rows = self._rows(trainer, batch_indices, len(decoded))
        path = self._rank_path(trainer, path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["row", *header])
            for row, values in zip(rows, cells, strict=True):
                writer.writerow([row, *values])
        rank_zero_info(f"predictions for {len(decoded)} rows written to {path}")

    @staticmethod
    def _rows(trainer: pl.Trainer, batch_indices: Any, count: int) -> list:
        """Which rows (file rows, or file names) the predictions are, in order."""
        order = [i for batch in batch_indices or [] for i in batch]
        if len(order) != count:
            order = list(range(count))
        datamodule = trainer.datamodule
        row_ids = datamodule.predict_row_ids if isinstance(datamodule, DataModule) else None
        return [row_ids[i] for i in order] if row_ids and len(row_ids) > max(order) else order

    @staticmethod
    def _rank_path(trainer: pl.Trainer, path: Path) -> Path:
        if trainer.world_size > 1:
            return path.with_name(f"{path.stem}_rank{trainer.global_rank}{path.suffix}")
        return path


def output_names(
    datamodule: pl.LightningDataModule | None, model: pl.LightningModule
) -> list[str] | None:
    """What a model's outputs are called: the DataModule's classes (or labels), else the
    regression targets' names the model was given."""
    classes = datamodule.classes if isinstance(datamodule, DataModule) else None
    if classes:
        return [str(c) for c in classes]
    return model.hparams.get("target_names") or None


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


class AdoptPreprocessing(Callback):
    """Hands a pretrained model's image preprocessing (``preprocessing_spec``) to an image
    DataModule at setup, so images are prepared as the weights were trained (the fine-tuner
    adds it to its runs). Outside a Trainer: ``dm.adopt_preprocessing(model.preprocessing_spec)``.
    """

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        from dlzoo.data.images import ImageFolderDataModule

        if isinstance(trainer.datamodule, ImageFolderDataModule):
            trainer.datamodule.adopt_preprocessing(pl_module.preprocessing_spec)


class CacheFeatures(Callback):
    """Runs a frozen backbone over the train and val images once, before the first epoch, and
    trains the head on those features (``FineTuneClassifier(cache_features=True)``)."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from dlzoo.data.images import ImageFolderDataModule

        datamodule = trainer.datamodule
        if not isinstance(datamodule, ImageFolderDataModule):
            raise ValueError(
                "cache_features needs an image DataModule (ImageFolderDataModule, "
                f"CatsDogsDataModule), not {type(datamodule).__name__}"
            )
        pl_module.ensure_pretrained()  # callbacks run before the module's own on_fit_start
        pl_module.backbone.eval()
        extractor = pl_module.extract_features
        runtime = pl_module.hparams.get("feature_runtime", "torch")
        if pl_module.device.type == "cpu" and runtime != "torch":
            from dlzoo.networks.backbones import CheckedExtractor

            extractor = CheckedExtractor(pl_module.backbone, extractor, torch.get_num_threads())
        datamodule.cache_features(extractor, pl_module.device)


class OnnxPredict(Callback):
    """``dlzoo predict`` on CPU with the network in ONNX Runtime: the model is exported at the
    start (parity checked to 1e-5 on example batches, as ``dlzoo export`` does) and each predict
    batch goes through the exported graph; outputs are decoded by the same task row.

    ``runtime``: ``onnxruntime`` (always; an export failure is an error), ``torch`` (never), or
    ``auto``: ONNX Runtime for sets of at least :attr:`MIN_BATCHES` batches (exporting costs
    seconds; below that eager torch is done first), torch where the network does not export.
    """

    #: under ``auto``, smaller predict sets stay in eager torch
    MIN_BATCHES = 16

    def __init__(self, runtime: str = "auto") -> None:
        self.runtime = runtime

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.runtime == "torch" or pl_module.device.type != "cpu":
            return
        if not isinstance(pl_module, TaskModule) or not isinstance(trainer.datamodule, DataModule):
            return
        batches = sum(int(n) for n in trainer.num_predict_batches if n != float("inf"))
        if self.runtime == "auto" and batches < self.MIN_BATCHES:
            return
        from dlzoo.deploy.runtime import export_runtime

        try:
            onnx = export_runtime(pl_module, trainer.datamodule, torch.get_num_threads())
            onnx.setup()
        except ValueError as err:  # ExportError: this network does not export
            if self.runtime == "onnxruntime":
                raise
            log.info("dlzoo predict runs torch: %s", err)
            return

        def predict_step(batch: Any, batch_idx: int, dataloader_idx: int = 0) -> dict:
            x = batch[0] if isinstance(batch, tuple | list) else batch
            return onnx(x)

        pl_module.predict_step = predict_step  # this run only: removed at predict end
        log.info("dlzoo predict: the network runs in ONNX Runtime (%d batches)", batches)

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        vars(pl_module).pop("predict_step", None)


class ProgressBar(TQDMProgressBar):
    """Lightning's progress bar without ``v_num`` (the run's version, shown as a metric)."""

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temporary file beside their target, synced, then renamed.

    Lightning's own writer stages local files in ``$TMPDIR`` and copies them across file
    systems, so a full disk or a kill during the copy leaves a truncated ``best-*.ckpt`` under a
    valid name. Here a checkpoint file either is complete or does not exist; the previous one of
    the same name stays until the new one is whole. Remote paths (``s3://`` ...) go to Lightning.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if "://" in str(path) and not str(path).startswith("file://"):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        path = Path(str(path).removeprefix("file://"))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        with contextlib.suppress(OSError):  # make the rename itself durable (POSIX)
            directory = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
