"""The one path from a checkpoint file to a model and its DataModule.

``dlzoo validate|test|predict|export|serve --ckpt_path`` and :func:`restore_checkpoint` read a
checkpoint here: safely (``weights_only=True`` unless told otherwise), with one-line errors for
files that are not checkpoints, and with the model class checked against the config's.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from dlzoo.data.base import DataModule
from dlzoo.models.base import TaskModule
from dlzoo.registry import MODELS, resolve_class


class CheckpointError(ValueError):
    """A file that is not a readable dlzoo checkpoint, or one of another model; says which."""


def read_checkpoint(path: str | Path, weights_only: bool = True) -> dict[str, Any]:
    """``torch.load`` of a checkpoint on the CPU, with one-line errors: a missing file, an empty
    or truncated one, a file that is no checkpoint at all. An unsafe pickle raises
    :class:`pickle.UnpicklingError` (``weights_only`` refused it)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty: not a checkpoint (was its writing interrupted?)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=weights_only)
    except pickle.UnpicklingError as err:
        if "weights_only" in str(err) and _is_torch_archive(path):
            raise  # a real checkpoint with objects weights_only refuses: torch's message says so
        raise CheckpointError(
            f"{path} is not a readable checkpoint (not a torch.save file)"
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as err:
        detail = " ".join(str(err).split())[:120]
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated or corrupt: {detail})"
        ) from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path} holds a {type(checkpoint).__name__}, not a checkpoint")
    return checkpoint


def _is_torch_archive(path: Path) -> bool:
    return zipfile.is_zipfile(path)


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
    model.load_state_dict(checkpoint["state_dict"])
    model.on_load_checkpoint(checkpoint)  # marks pretrained weights as replaced
    model.eval().requires_grad_(False)
    return checkpoint


def _class_path(model: pl.LightningModule) -> str:
    return f"{type(model).__module__}.{type(model).__qualname__}"


__all__ = ["CheckpointError", "checkpoint_model_class", "read_checkpoint", "restore_checkpoint"]
