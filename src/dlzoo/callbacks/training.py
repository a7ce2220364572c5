"""Callbacks of a training run: exact resumes (``EpochSeed``), the progress bar, and two kept
for code of 0.1.0.dev0 (``AdoptPreprocessing``, ``CacheFeatures``): the models do their work."""

from __future__ import annotations

import os
import random

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, TQDMProgressBar


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
    """Kept for code of 0.1.0.dev0 that adds it: dlzoo's runs no longer use it. A fine-tuner
    with ``cache_features=True`` (the image fine-tuner, the text encoder) hands its frozen
    backbone to the DataModule itself when training starts; this does the same for one
    without that option (torch computes the features)."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if pl_module.hparams.get("cache_features"):
            return  # the model does it (``start_backbone_fit``)
        pl_module.ensure_pretrained()  # callbacks run before the module's own on_fit_start
        pl_module.backbone.eval()
        trainer.datamodule.cache_features(pl_module.extract_features, pl_module.device)


__all__ = ["AdoptPreprocessing", "CacheFeatures", "EpochSeed", "ProgressBar"]
