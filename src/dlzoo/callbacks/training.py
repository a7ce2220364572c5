"""Callbacks of a training run: exact resumes (``EpochSeed``), the progress bar, the frozen
backbone's feature pass (``CacheFeatures``), and ``AdoptPreprocessing`` (kept for old configs)."""

from __future__ import annotations

import logging
import os
import random

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, TQDMProgressBar

log = logging.getLogger(__name__)


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


class ProgressBar(TQDMProgressBar):
    """Lightning's progress bar without ``v_num`` (the run's version, shown as a metric)."""

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics


class AdoptPreprocessing(Callback):
    """Kept for configs of 0.1.0.dev0 that name it: dlzoo's runs no longer use it. The dlzoo
    command hands a model's needs to its DataModule before any data is read
    (``DataModule.connect`` with the model class's ``data_settings``), and a fine-tuner started
    from Python does it at setup (``TaskModule.connect_data``); this does the same at setup."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        from dlzoo.models.base import TaskModule

        if isinstance(pl_module, TaskModule):  # another module has no data settings
            pl_module.connect_data(trainer.datamodule)


class CacheFeatures(Callback):
    """Runs a frozen backbone over the train and val inputs once, before the first epoch, and
    trains the head on those features (``cache_features=True`` of the image fine-tuner and of
    the text encoder). On CPU, ONNX Runtime computes them unless ``feature_runtime='torch'``
    (checked against torch on the first batch)."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from dlzoo.data.images import ImageFolderDataModule
        from dlzoo.data.text import TextClassificationDataModule

        datamodule = trainer.datamodule
        if isinstance(datamodule, ImageFolderDataModule):
            module, names = pl_module.backbone, ("images",)
        elif isinstance(datamodule, TextClassificationDataModule):
            from dlzoo.networks.text_encoder import PooledFeatures

            module, names = PooledFeatures(pl_module.network), ("tokens", "lengths")
        else:
            raise ValueError(
                "cache_features needs an image DataModule (ImageFolderDataModule, "
                "CatsDogsDataModule) or a text DataModule, not "
                f"{type(datamodule).__name__}"
            )
        pl_module.ensure_pretrained()  # callbacks run before the module's own on_fit_start
        pl_module.backbone.eval()
        extractor = pl_module.extract_features
        runtime = pl_module.hparams.get("feature_runtime", "torch")
        if pl_module.device.type == "cpu" and runtime != "torch":
            from dlzoo.networks.backbones import CheckedExtractor

            extractor = CheckedExtractor(module, extractor, torch.get_num_threads(), names)
        datamodule.cache_features(extractor, pl_module.device)


__all__ = ["AdoptPreprocessing", "CacheFeatures", "EpochSeed", "ProgressBar"]
