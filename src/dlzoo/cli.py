"""The ``dlzoo`` command: LightningCLI with dlzoo's defaults and argument links.

``dlzoo fit --config examples/configs/bank_ffn.yaml`` trains; ``validate``, ``test`` and
``predict`` take ``--ckpt_path``. Every artifact of a run (checkpoints, ``metrics.csv``,
``config.yaml``, plots, predictions) lands in ``<default_root_dir>/lightning_logs/version_<N>/``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger

import dlzoo  # noqa: F401  (registers every model and DataModule for class_path short names)
from dlzoo.callbacks import EpochSeed, PredictionWriter, RunArtifacts

#: sizes a DataModule knows and a model needs; a link whose target a model lacks is skipped
LINKED_SIZES = (
    "num_features",
    "num_classes",
    "input_shape",
    "vocab_size",
    "pad_index",
    "pretrained_embeddings",
)


def default_loggers(root: str | Path) -> list[Logger]:
    """CSVLogger (and TensorBoard when installed) sharing one ``lightning_logs/version_N``."""
    root = Path(root)
    versions = [
        int(m.group(1))
        for p in (root / "lightning_logs").glob("version_*")
        if (m := re.fullmatch(r"version_(\d+)", p.name))
    ]
    version = max(versions, default=-1) + 1
    loggers: list[Logger] = [CSVLogger(root, name="lightning_logs", version=version)]
    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        loggers.append(
            TensorBoardLogger(root, name="lightning_logs", version=version, default_hp_metric=False)
        )
    return loggers


class DlzooCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # Two checkpoints: the best by a monitored metric, and last.ckpt rewritten every epoch.
        # Lightning 2.6 writes ModelCheckpoint(save_last=True)'s last.ckpt only when a new top-k
        # checkpoint is saved in the same step, so last.ckpt could be many epochs old on resume.
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.save_top_k": 1, "checkpoint.save_last": False})
        parser.add_lightning_class_args(ModelCheckpoint, "last_checkpoint")
        parser.set_defaults(
            {
                "last_checkpoint.filename": "last",
                "last_checkpoint.monitor": None,
                "last_checkpoint.save_top_k": 1,
                "last_checkpoint.enable_version_counter": False,
            }
        )
        parser.add_lightning_class_args(RunArtifacts, "artifacts")
        parser.add_lightning_class_args(PredictionWriter, "prediction_writer")
        parser.add_lightning_class_args(EpochSeed, "epoch_seed")
        for size in LINKED_SIZES:
            parser.link_arguments(f"data.{size}", f"model.init_args.{size}", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        if self.subcommand in ("validate", "test", "predict") and not config.get("ckpt_path"):
            # without a checkpoint the model's weights are random: refuse rather than report
            # metrics or predictions of an untrained network
            raise ValueError(
                f"dlzoo {self.subcommand} needs --ckpt_path: a checkpoint written by dlzoo fit, "
                "e.g. <run>/checkpoints/last.ckpt or best-*.ckpt, with --config <run>/config.yaml"
            )
        if config.get("weights_only", False) is None:
            # Lightning's None means torch's safe default for local files but full unpickling
            # for http(s) checkpoints: here nothing unpickles arbitrary objects unless the user
            # says --weights_only false.
            config.weights_only = True
        checkpoint = config.checkpoint
        if checkpoint.monitor is None:
            # keep the best by what the model says matters (val AUROC for classifiers)
            model_class = _import(config.model.class_path)
            monitor, mode = getattr(model_class, "default_monitor", ("val_loss", "min"))
            checkpoint.monitor, checkpoint.mode = monitor, mode
            if checkpoint.filename is None:
                checkpoint.filename = "best-{epoch:03d}-{" + monitor + ":.4f}"

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        trainer_config = config.trainer
        if trainer_config.logger in (None, True) and "logger" not in kwargs:
            root = trainer_config.default_root_dir or os.getcwd()
            kwargs["logger"] = default_loggers(root)
        return super().instantiate_trainer(**kwargs)


def _import(class_path: str) -> type:
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def make_cli(args: list[str] | None = None, run: bool = True) -> DlzooCLI:
    """The ``dlzoo`` CLI on ``args``; ``run=False`` only builds the model, data and trainer
    (then ``args`` has no subcommand)."""
    return DlzooCLI(
        model_class=pl.LightningModule,
        datamodule_class=pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=2020,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )


def main(args: list[str] | None = None) -> None:
    """Entry point of the ``dlzoo`` command (also ``python -m dlzoo``)."""
    make_cli(args)


__all__ = ["DlzooCLI", "default_loggers", "main", "make_cli"]
