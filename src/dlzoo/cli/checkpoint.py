"""The one path from a checkpoint file to a model and its DataModule.

``dlzoo validate|test|predict|export|serve --ckpt_path`` and :func:`restore_checkpoint` read a
checkpoint here: safely (``weights_only=True`` unless told otherwise), with one-line errors for
files that are not checkpoints, and with the model class checked against the config's.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_only

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


def refuse_a_checkpoint_without_its_run(args: list[str]) -> None:
    """``dlzoo predict --ckpt_path X`` (or validate, test, export, serve) with neither a config
    nor ``--model`` and ``--data``: a ``ValueError`` naming the run's ``config.yaml`` (which
    ``dlzoo fit`` writes beside ``checkpoints/``), before jsonargparse asks for
    ``predict.model`` and ``predict.data``."""
    keys = [a.split("=", 1)[0] for a in args]
    if args[:1] not in (["validate"], ["test"], ["predict"], ["export"], ["serve"]):
        return
    if "--ckpt_path" not in keys or set(keys) & {"--help", "-h", "--print_config"}:
        return
    naming = {"--config", "-c", "--model", "--model.class_path", "--data", "--data.class_path"}
    if set(keys) & naming:
        return
    index = keys.index("--ckpt_path")
    _, eq, path = args[index].partition("=")
    path = path if eq else (args[index + 1] if index + 1 < len(args) else "")
    config = Path(path).parent.parent / "config.yaml"
    if Path(path).parent.name == "checkpoints" and config.is_file():
        raise ValueError(
            f"dlzoo {args[0]} --ckpt_path needs the run's config: add --config {config}"
        )
    raise ValueError(
        f"dlzoo {args[0]} --ckpt_path needs the run's config (--config RUN/config.yaml, which"
        " dlzoo fit writes in the run folder) or --model and --data"
    )


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


def refuse_stretched_schedule(
    checkpoint: dict[str, Any], max_epochs: int | None, path: str
) -> None:
    """Refuse, before anything is written, to resume a one-cycle schedule past its planned end.

    ``OneCycleLR`` is planned for a fixed number of steps when a run starts, and the resumed
    scheduler keeps that plan: with a larger ``max_epochs`` it would fail mid-epoch ("Tried to
    step N times"). A schedule cannot be stretched half-way without changing what the epochs
    already trained meant, so dlzoo asks for the planned ``max_epochs`` or a new run instead."""
    epochs_done = int(checkpoint.get("epoch", -1)) + 1
    steps_done = int(checkpoint.get("global_step", 0))
    if not max_epochs or max_epochs < 0 or epochs_done < 1 or steps_done < 1:
        return
    for state in checkpoint.get("lr_schedulers") or []:
        total = state.get("total_steps") if isinstance(state, dict) else None
        if not total or ("anneal_func" not in state and "_anneal_func_type" not in state):
            continue  # not a OneCycleLR
        planned = round(total * epochs_done / steps_done)
        if max_epochs > planned:
            raise ValueError(
                f"cannot resume {path} with max_epochs={max_epochs}: its one-cycle learning-rate "
                f"schedule was planned for {planned} epochs ({total} steps) when the run "
                f"started. Resume with --trainer.max_epochs {planned}, or start a new run "
                "(without --ckpt_path) for a longer schedule"
            )


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
        write_atomically(path, lambda f: torch.save(checkpoint, f))


def write_atomically(path: Path, write: Callable[[BinaryIO], Any]) -> None:
    """``write(file)`` to a temporary file beside ``path``, synced, then renamed to ``path``: the
    file under the name is whole or absent, and the previous one stays until then."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
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


class RunCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint``, which keeps the best checkpoint when a run resumes.

    ``dlzoo fit --ckpt_path`` resumes into a new run folder (``version_<N+1>``). Lightning 2.6
    then forgets the best score ("The dirpath has changed ...") and keeps the resumed run's
    first checkpoint as its best, whatever its score. Here the earlier folder's best
    checkpoints are copied into the new folder and tracked from there, as if the run had never
    stopped: a better checkpoint replaces the copy, never the earlier run's file. Its
    ``state_key`` is Lightning's class's, so runs written with either resume with either.
    """

    @property
    def state_key(self) -> str:
        return super().state_key.replace(type(self).__qualname__, "ModelCheckpoint", 1)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        before = state_dict.get("dirpath")
        if before is None or self.dirpath is None or before == self.dirpath:
            super().load_state_dict(state_dict)
            return

        def moved(path: str) -> str:
            inside = path and Path(path).parent == Path(before)
            return os.path.join(self.dirpath, Path(path).name) if inside else path

        best_k = {}
        for path, score in state_dict.get("best_k_models", {}).items():
            if Path(path).is_file():  # one the user deleted is not tracked
                _copy_new(path, moved(path))
                best_k[moved(path)] = score
        kth = state_dict.get("kth_best_model_path", "")
        super().load_state_dict(
            {
                **state_dict,
                "dirpath": self.dirpath,
                "best_k_models": best_k,
                "best_model_path": moved(state_dict.get("best_model_path", "")),
                "kth_best_model_path": moved(kth) if moved(kth) in best_k else "",
                "last_model_path": moved(state_dict.get("last_model_path", "")),
            }
        )


@rank_zero_only
def _copy_new(source: str, target: str) -> None:
    """Copy ``source`` to ``target`` unless ``target`` exists (nothing is overwritten)."""
    if not os.path.exists(target):
        with open(source, "rb") as f:
            write_atomically(Path(target), lambda out: shutil.copyfileobj(f, out))


__all__ = [
    "AtomicCheckpointIO",
    "CheckpointError",
    "RunCheckpoint",
    "checkpoint_model_class",
    "read_checkpoint",
    "refuse_a_checkpoint_without_its_run",
    "refuse_stretched_schedule",
    "restore_checkpoint",
    "write_atomically",
]
