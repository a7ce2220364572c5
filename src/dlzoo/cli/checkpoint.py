"""The one path from a checkpoint file to a model and its DataModule.

``dlzoo validate|test|predict|export|serve --ckpt_path`` and :func:`restore_checkpoint` read a
checkpoint here: safely (``weights_only=True`` unless told otherwise), with one-line errors for
files that are not checkpoints, and with the model class checked against the config's.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.plugins import TorchCheckpointIO

from dlzoo.checkpoints import CheckpointError, read_checkpoint
from dlzoo.data.base import DataModule
from dlzoo.models.base import TaskModule
from dlzoo.registry import MODELS, resolve_class


def checkpoint_model_class(
    checkpoint: dict[str, Any], configured: str | None, path: str | Path
) -> type | None:
    """The model class a checkpoint was written by: a registered dlzoo model, or the config's
    own class. Refuses a checkpoint of another model than the config names, and any class that
    is neither (it is not imported)."""
    hparams = checkpoint.get("hyper_parameters") or {}
    class_path = hparams.get("_class_path") or configured
    if not class_path:
        return None
    model_class = _dlzoo_model(class_path)
    wanted = _dlzoo_model(configured) if configured else None
    if model_class is None:
        if class_path != configured:
            raise CheckpointError(
                f"{path} was written by model class {class_path!r}, which is neither a dlzoo "
                f"model nor the model of the config ({configured}); it is not imported. If you "
                f"trust that code, name it yourself: --model {class_path}"
            )
        return None  # the user's own class, named by the config: imported by LightningCLI
    if configured and wanted is not None and wanted is not model_class:
        raise CheckpointError(
            f"{path} holds a {model_class.__name__} checkpoint, but the config asks for "
            f"{wanted.__name__}: use the run's config.yaml, or --model "
            f"{model_class.__module__}.{model_class.__qualname__}"
        )
    return model_class


def _dlzoo_model(class_path: str) -> type | None:
    """A registered model, or :class:`TaskModule` itself (which trains a network of the user's:
    that network's class is imported from the config, never from the checkpoint)."""
    if class_path in ("TaskModule", "dlzoo.models.TaskModule", "dlzoo.models.base.TaskModule"):
        return TaskModule
    return resolve_class(MODELS, class_path)


def restore_checkpoint(
    model: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    ckpt_path: str | Path,
    weights_only: bool = True,
) -> dict[str, Any]:
    """Load a ``dlzoo fit`` checkpoint's weights into ``model`` and its fitted preprocessing
    (scaler, category maps, vocabulary, classes) into ``datamodule``; returns the checkpoint.

    Loads with ``weights_only=True`` unless told otherwise. Pretrained files (ImageNet weights,
    word vectors) are not needed: the checkpoint's weights replace them.
    """
    checkpoint = read_checkpoint(ckpt_path, weights_only=weights_only)
    if isinstance(datamodule, DataModule):
        datamodule.restore(checkpoint)
    checkpoint_model_class(checkpoint, _class_path(model), ckpt_path)
    # Lightning's order: the hook (which marks pretrained weights as replaced, and may build
    # what the weights load into), then the weights
    model.on_load_checkpoint(checkpoint)
    model.load_state_dict(checkpoint["state_dict"])
    model.eval().requires_grad_(False)
    return checkpoint


def _class_path(model: pl.LightningModule) -> str:
    return f"{type(model).__module__}.{type(model).__qualname__}"


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


__all__ = [
    "AtomicCheckpointIO",
    "CheckpointError",
    "checkpoint_model_class",
    "read_checkpoint",
    "restore_checkpoint",
]
