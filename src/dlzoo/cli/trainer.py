"""The Trainer of the ``dlzoo`` command: Lightning's, plus ``export`` and ``serve`` (the
deployment subcommands) and a ``predict`` that runs the network in ONNX Runtime where that pays;
and the loggers every run gets."""

from __future__ import annotations

import importlib.util
import logging
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger

from dlzoo.cli.checkpoint import restore_checkpoint
from dlzoo.data.base import DataModule
from dlzoo.deploy import RuntimeName
from dlzoo.deploy.export import ExportFormat, export_model
from dlzoo.models.base import TaskModule

log = logging.getLogger(__name__)


def default_loggers(root: str | Path, name: str = "lightning_logs") -> list[Logger]:
    """CSVLogger (and TensorBoard when installed) sharing one ``<name>/version_N``."""
    root = Path(root)
    versions = [
        int(m.group(1))
        for p in (root / name).glob("version_*")
        if (m := re.fullmatch(r"version_(\d+)", p.name))
    ]
    version = max(versions, default=-1) + 1
    loggers: list[Logger] = [CSVLogger(root, name=name, version=version)]
    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        loggers.append(TensorBoardLogger(root, name=name, version=version, default_hp_metric=False))
    return loggers


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


class DlzooTrainer(pl.Trainer):
    """Lightning's Trainer, plus the two deployment subcommands of ``dlzoo``: export and serve."""

    def export(
        self,
        model: pl.LightningModule,
        datamodule: pl.LightningDataModule,
        ckpt_path: str | None = None,
        output: str = "export",
        format: ExportFormat = "onnx",
        weights_only: bool | None = True,
    ) -> Path:
        """Write a trained model and its preprocessing as a bundle (ONNX or TorchScript).

        Args:
            model: the model of the run's config (its weights come from ``ckpt_path``).
            datamodule: the DataModule of the run's config (its fitted state, too).
            ckpt_path: a checkpoint written by ``dlzoo fit``.
            output: the bundle folder: the model file, ``dlzoo-bundle.json`` and any files the
                preprocessing needs (``vocab.json``).
            format: ``onnx`` (run with ONNX Runtime) or ``torchscript`` (``torch.jit.load``).
            weights_only: load the checkpoint with ``torch.load(weights_only=True)`` (default).
        """
        if ckpt_path is None:
            raise ValueError("dlzoo export needs --ckpt_path")
        restore_checkpoint(model, datamodule, ckpt_path, weights_only=weights_only is not False)
        path = export_model(model, datamodule, output, format, checkpoint=ckpt_path)
        print(f"dlzoo: exported {type(model).__name__} ({format}) to {path.parent}")
        return path

    def serve(
        self,
        model: pl.LightningModule,
        datamodule: pl.LightningDataModule,
        ckpt_path: str | None = None,
        runtime: RuntimeName = "auto",
        accelerator: str = "cpu",
        workers_per_device: int | None = None,
        weights_only: bool | None = True,
        **options: Any,
    ) -> None:
        """Serve a trained model over HTTP: POST /predict with raw inputs, GET /health.

        Stops cleanly on SIGTERM or SIGINT (in-flight requests drained, the port freed). To
        serve an exported bundle without a config: ``dlzoo serve --bundle DIR``.

        Args:
            model: the model of the run's config (its weights come from ``ckpt_path``).
            datamodule: the DataModule of the run's config (its fitted state, too).
            ckpt_path: a checkpoint written by ``dlzoo fit``.
            runtime: ``onnxruntime`` (the network exported at start-up, parity checked),
                ``torch`` (eager), or ``auto``: ONNX Runtime on CPU (2-4x faster), torch where
                the network does not export or on a GPU.
            accelerator: ``cpu``, ``cuda`` or ``auto`` (a GPU if there is one).
            workers_per_device: the old name of ``workers``.
            weights_only: load the checkpoint with ``torch.load(weights_only=True)`` (default).
            **options: how to serve and the budgets of a request: the fields of
                :class:`dlzoo.deploy.options.ServeOptions`, each a flag of the same name.
        """
        if ckpt_path is None:
            raise ValueError("dlzoo serve needs --ckpt_path (or --bundle DIR, an export bundle)")
        from dlzoo.deploy.options import ServeOptions
        from dlzoo.deploy.serve import PredictionAPI
        from dlzoo.deploy.server import serve

        given = ServeOptions(**options)  # checked here, before the checkpoint is read
        gpu = accelerator in ("cuda", "gpu") or (
            accelerator == "auto" and torch.cuda.is_available()
        )
        serving = replace(given, workers=workers_per_device or given.workers).resolved(gpu)
        if gpu and runtime == "onnxruntime":
            raise ValueError("--runtime onnxruntime serves on CPU: use --accelerator cpu")
        restore_checkpoint(model, datamodule, ckpt_path, weights_only=weights_only is not False)
        api = PredictionAPI.for_model(
            model, datamodule, runtime="torch" if gpu else runtime, **serving.prediction_settings
        )
        serve(api, serving, accelerator="cuda" if gpu else "cpu")

    def predict(
        self,
        model: pl.LightningModule | None = None,
        dataloaders: Any = None,
        datamodule: pl.LightningDataModule | None = None,
        return_predictions: bool | None = None,
        ckpt_path: str | Path | None = None,
        weights_only: bool | None = None,
        runtime: RuntimeName = "auto",
    ) -> Any:
        """Lightning's predict, with the network in ONNX Runtime on CPU where that pays.

        Args:
            runtime: ``onnxruntime`` (the model exported at the start, parity checked to
                1e-5), ``torch`` (eager), or ``auto``: ONNX Runtime for predict sets of 16
                batches or more on CPU (2-8x faster, BENCHMARKS.md), torch below that, on a
                GPU, or where the network does not export.
        """
        callback = OnnxPredict(runtime)
        self.callbacks.append(callback)
        try:
            return super().predict(
                model, dataloaders, datamodule, return_predictions, ckpt_path, weights_only
            )
        finally:
            self.callbacks.remove(callback)


__all__ = ["DlzooTrainer", "default_loggers"]
