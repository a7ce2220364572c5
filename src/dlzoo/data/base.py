"""The contract every dlzoo DataModule keeps, in code: :class:`DataModule` and :class:`Preprocessor`.

A DataModule reads its data, fits its preprocessing on the training split, and hands the fitted
state to a :class:`Preprocessor`: the object that turns raw inputs (a row, a text, an image
file) into the model's input. ``dlzoo predict``, ``dlzoo serve`` and ``dlzoo export`` use only
``dm.preprocessor`` and the model's task (:mod:`dlzoo.tasks`); the DataModule's fitted state
travels in every checkpoint (``state_dict``) and is restored in one place, :meth:`DataModule.restore`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from jsonargparse import ArgumentParser
from sklearn.model_selection import train_test_split

from dlzoo.checkpoints import read_checkpoint
from dlzoo.data.preprocess import Preprocessor
from dlzoo.registry import init_arguments
from dlzoo.tasks import classification_task


class DataModule(pl.LightningDataModule):
    """The one base below LightningDataModule: the contract the CLI, export and serve rely on.

    A subclass sets :attr:`input_options`, implements :attr:`preprocessor` and
    :attr:`fitted_targets` (or ``classes`` and ``num_classes``, where they are fixed), and its
    fitted state in ``state_dict`` / ``load_state_dict``. Presets override only what they change.
    """

    #: options that decide the model's input, each an attribute: a checkpoint's values may not
    #: be changed
    input_options: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        # the arguments of every __init__ of the subclass chain (Lightning reads the callers'
        # frames), so configs and checkpoints round-trip. Not `task`: the model's linked `task`
        # is the one decided from the data, and Lightning refuses a model and a DataModule whose
        # shared hyperparameters differ; the decided task is saved in the state instead
        self.save_hyperparameters(ignore=["task"])
        #: what each prediction of the last predict loader is (file rows, file names)
        self.predict_row_ids: list[Any] = []

    # ---------------------------------------------------------------------- the contract
    @property
    def fitted_targets(self) -> dict[str, Any] | None:
        """The target state fitted on the training split (:func:`dlzoo.data.targets.fit_targets`:
        ``task``, ``columns``, ``classes`` or labels, regression ``transform``), from which the
        properties below describe the data; ``None`` where the classes are fixed (MNIST)."""
        return None

    @property
    def task(self) -> str:
        """The task the data poses (a name of :data:`dlzoo.tasks.TASKS`); linked into the model."""
        targets = self.fitted_targets
        return targets["task"] if targets else classification_task(self.num_classes)

    @property
    def classes(self) -> list[str]:
        """Class or label names in the model's output order (none for regression)."""
        targets = self.fitted_targets
        return list(targets.get("classes") or []) if targets else []

    @property
    def num_classes(self) -> int | None:
        """Classes, or labels of a multi-label target; ``None`` for regression."""
        classes = (self.fitted_targets or {}).get("classes")
        return len(classes) if classes is not None else None

    @property
    def num_targets(self) -> int | None:
        """Regression outputs (``None`` for classification)."""
        targets = self.fitted_targets
        return len(targets["columns"]) if targets and targets["task"] == "regression" else None

    @property
    def target_names(self) -> list[str] | None:
        """The regression targets' names (``None`` for classification)."""
        targets = self.fitted_targets
        return list(targets["columns"]) if targets and targets["task"] == "regression" else None

    @property
    def target_transform(self) -> dict[str, Any] | None:
        """The regression targets' fitted scaling, which the model inverts at every output."""
        return (self.fitted_targets or {}).get("transform")

    @property
    def preprocessor(self) -> Preprocessor:
        """The fitted preprocessing of raw inputs (fits it on the training split if needed)."""
        raise NotImplementedError(f"{type(self).__name__} has no preprocessor")

    def connect(
        self,
        preprocessing: str | None = None,
        tokenizer: str | None = None,
        cached_features: bool = False,
    ) -> None:
        """What a model needs of the data, handed over once, before the data is read: the
        dlzoo command calls it with the model class's ``data_settings`` of its configured
        arguments (:meth:`dlzoo.models.base.TaskModule.data_settings`), as litgpt's
        ``connect()`` does. ``preprocessing``: the pretrained weights whose image transforms
        to use (:meth:`adopt_preprocessing`); ``tokenizer``: a pretrained encoder whose
        tokenizer to use (:meth:`adopt_tokenizer`); ``cached_features``: the model will hand
        its frozen backbone to :meth:`cache_features` when training starts (checked here, so
        a DataModule that cannot is refused before anything is read)."""
        if preprocessing is not None:
            self.adopt_preprocessing(preprocessing)
        if tokenizer is not None:
            self.adopt_tokenizer(tokenizer)
        if cached_features:
            self.check_feature_caching()

    def adopt_preprocessing(self, spec: str | None) -> None:
        """Prepare inputs as pretrained weights ``spec`` were trained; image DataModules do,
        the others have no such choice."""

    def adopt_tokenizer(self, source: str) -> None:
        """Take a pretrained model's own tokenizer from its encoder ``source``; text
        DataModules set to ``tokenizer='model'`` take it, the others have nothing to tokenise."""

    def check_feature_caching(self) -> None:
        """Raise unless :meth:`cache_features` can work here (image and text DataModules)."""
        raise ValueError(
            "cache_features needs an image DataModule (ImageFolderDataModule, "
            f"CatsDogsDataModule) or a text DataModule, not {type(self).__name__}"
        )

    def cache_features(
        self,
        extractor: Callable[..., torch.Tensor],
        device: torch.device | str = "cpu",
        batch_size: int | None = None,
    ) -> None:
        """Run ``extractor`` (a frozen backbone: a batch's inputs to ``(N, dim)`` features)
        over the train and val inputs once; from then on their loaders yield
        ``(BackboneFeatures, target)`` batches (``cache_features`` of the fine-tuners, which
        call this when training starts)."""
        self.check_feature_caching()

    # --------------------------------------------------------------------------- loaders
    def _loader(self, split: str, shuffle: bool = False) -> Any:
        """The loader of ``split`` (``train``, ``val``, ``test``)."""
        raise NotImplementedError(f"{type(self).__name__} has no {split} loader")

    def train_dataloader(self) -> Any:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> Any:
        return self._loader("val")

    def test_dataloader(self) -> Any:
        return self._loader("test")

    # ---------------------------------------------------- raw inputs (names of 0.1.0.dev0)
    @property
    def input_kind(self) -> str:
        return self.preprocessor.kind

    def encode_inputs(self, inputs: Sequence[Any]) -> list[Any]:
        return self.preprocessor.encode(inputs)

    def collate_inputs(self, items: Sequence[Any]) -> Any:
        return self.preprocessor.collate(items)

    def export_preprocessing(self, directory: Path) -> dict[str, Any]:
        return self.preprocessor.describe(directory)

    # ------------------------------------------------------------------------- checkpoints
    def check_restored_options(self, saved: dict[str, Any]) -> None:
        """Refuse options that would change the model's input from what a checkpoint was fitted
        with (``saved``: its DataModule hyperparameters); options for new rows may change."""
        refuse_changed_options(self, saved, self.input_options)

    def restore(self, checkpoint: dict[str, Any]) -> bool:
        """Take a loaded checkpoint's fitted state (the one restore path of the CLI, export,
        serve and :meth:`from_checkpoint`). Returns whether it held state for this class."""
        state = checkpoint.get(type(self).__qualname__)
        saved = checkpoint.get("datamodule_hyper_parameters") or {}
        written_by_this_class = str(saved.get("_class_path", "")).endswith(
            "." + type(self).__qualname__
        )
        if state is None and not written_by_this_class:
            return False  # a checkpoint of other data, or one written outside the CLI
        self.check_restored_options(saved)
        if state is not None:  # None: nothing fitted (MNIST), but its options still count
            self.load_state_dict(state)
        return True

    @classmethod
    def from_checkpoint(cls, checkpoint_path: str | Path, **overrides: Any) -> DataModule:
        """The DataModule a checkpoint was trained with, its fitted preprocessing restored.

        Needs no training data: ``dm = TabularDataModule.from_checkpoint(ckpt,
        predict_file="new.csv")``, then ``trainer.predict(model, datamodule=dm)``. Loads with
        ``weights_only=True``.
        """
        checkpoint = read_checkpoint(checkpoint_path)
        saved = checkpoint.get("datamodule_hyper_parameters")
        if cls.__qualname__ not in checkpoint and saved is None:
            raise ValueError(f"{checkpoint_path} holds no {cls.__name__} state")
        saved = saved or {}
        # what the class's signature offers, as its config does: a preset's fixed options
        # (BankMarketingDataModule's target), saved by the base it passes them to, are not
        parser = ArgumentParser(exit_on_error=False)
        parser.add_class_arguments(cls, fail_untyped=False)
        accepted = set(parser.get_defaults().keys()) & init_arguments(cls)
        datamodule = cls(**{**{k: v for k, v in saved.items() if k in accepted}, **overrides})
        datamodule.restore(checkpoint)
        return datamodule


def output_names(
    datamodule: pl.LightningDataModule | None, model: pl.LightningModule
) -> list[str] | None:
    """What a model's outputs are called: the DataModule's classes (or labels), else the
    regression targets' names the model was given."""
    classes = datamodule.classes if isinstance(datamodule, DataModule) else None
    if classes:
        return [str(c) for c in classes]
    return model.hparams.get("target_names") or None


def check_task_option(task: str | None) -> None:
    """A DataModule's ``task`` option: a task a target can pose, or ``None`` (infer it)."""
    if task not in (None, "binary", "multiclass", "multilabel", "regression"):
        raise ValueError(f"task must be binary, multiclass, multilabel or regression, got {task!r}")


def check_restored_task(option: str | None, saved: str | None) -> None:
    """A DataModule's ``task`` option (``option``) must be the task a checkpoint's model was
    trained for (``saved``; ``None``: not recorded), or unset."""
    if option is not None and saved is not None and saved != option:
        raise ValueError(
            f"task={option!r}, but the checkpoint's model was trained for {saved!r}: leave task "
            "as it was"
        )


def refuse_changed_options(
    datamodule: pl.LightningDataModule, saved: dict[str, Any], names: Sequence[str]
) -> None:
    """Raise if any of ``names`` differs between ``datamodule`` and a checkpoint's ``saved``
    DataModule hyperparameters: the model was trained on inputs those options produced."""
    changed = []
    for name in names:
        if name not in saved:
            continue
        now, then = getattr(datamodule, name), saved[name]  # a name of input_options
        if isinstance(now, str) and isinstance(then, list | tuple):
            now = [now]  # target: price and target: [price] are the same
        if isinstance(then, str) and isinstance(now, list | tuple):
            then = [then]
        if isinstance(now, tuple | list) or isinstance(then, tuple | list):
            now, then = list(now or []), list(then or [])
        if now != then:
            changed.append(f"{name}={now!r} (the checkpoint's model was trained with {then!r})")
    if changed:
        raise ValueError(
            "these options would change the model's input from what the checkpoint was trained "
            f"on: {'; '.join(changed)}. Leave them as they were (use the run's config.yaml); "
            "options that only concern new rows (predict_file, missing_values ...) may change."
        )


def seeded_split(
    count: int,
    held_out: int | float,
    seed: int,
    labels: Sequence[Any] | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a seeded split of ``count`` items: ``(kept, held_out)``; ``held_out`` is a
    count or a fraction. Stratified on ``labels`` when given and every class has two items or
    more. Every DataModule splits here (scikit-learn's ``train_test_split`` on the indices:
    the same split it gives the rows themselves, so splits of earlier releases stay exact)."""
    index = np.arange(count)
    stratify = None
    if labels is not None:
        values, counts = np.unique(np.asarray(labels), return_counts=True)
        stratify = labels if len(values) > 1 and counts.min() >= 2 else None
    kept, out = train_test_split(index, test_size=held_out, random_state=seed, stratify=stratify)
    return kept, out


__all__ = [
    "DataModule",
    "Preprocessor",
    "check_restored_task",
    "check_task_option",
    "output_names",
    "refuse_changed_options",
    "seeded_split",
]
