"""Image classification from ``root/<class>/*.jpg`` folders (the Cats-vs-Dogs preset: ``cats_dogs.py``).

Images are decoded with ``torchvision.io`` (libjpeg-turbo) in DataLoader workers; the transforms
live here: the book's Resize 255 -> CenterCrop 224 -> ImageNet normalisation for evaluation, and
RandomResizedCrop + flip for training when ``augment`` is on. Every file is decoded once before the
first epoch, and unreadable ones (zero bytes, truncated, not an image) are skipped and reported,
so a bad JPEG never stops a run in the middle of an epoch. Those checks are cached by path, size
and modification time.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate
from torchvision.datasets.folder import find_classes
from torchvision.transforms import InterpolationMode, v2

from dlzoo.data.base import DataModule, check_restored_task, check_task_option, seeded_split
from dlzoo.data.batching import FeatureDataset, batch_loader, ordered_loader
from dlzoo.data.image_files import (
    IMAGE_EXTENSIONS,
    ImageFiles,
    csv_rows,
    labelled_files,
    readable_files,
)
from dlzoo.data.preprocess.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImagePreprocessor,
)
from dlzoo.data.targets import decide_task, encode_targets, fit_targets
from dlzoo.networks.backbones import pretrained_eval_settings
from dlzoo.registry import register_datamodule
from dlzoo.tasks import TASKS, TaskName, classification_task

log = logging.getLogger(__name__)


@register_datamodule("image_folder")
class ImageFolderDataModule(DataModule):
    """Images in ``data_dir/<split>/<class>/*.jpg`` folders (torchvision's ImageFolder layout), or
    listed in a CSV of file paths and targets (``labels_file``: multi-label, regression).

    Args:
        data_dir: the folder holding ``train_dir`` (and ``val_dir``); also searched one level down
            (an archive's top folder).
        train_dir: the training images, one sub-folder per class.
        val_dir: the validation images, same classes. If the folder does not exist (or is
            ``None``), ``val_fraction`` of ``train_dir`` is held out, stratified and seeded.
        test_dir: labelled images for ``dlzoo test``.
        predict_dir: a folder of images, searched recursively, for ``dlzoo predict`` (default: the
            validation images); the predictions name each file.
        val_fraction: share of ``train_dir`` held out when there is no ``val_dir``.
        image_size: side of the square crop the model sees.
        resize_size: evaluation resize of the shorter side before the centre crop (the book: 255).
        augment: RandomResizedCrop(image_size) and horizontal flips for training images.
        preprocessing: the evaluation transforms of pretrained weights instead: a torchvision
            weights entry (``MobileNet_V2_Weights.IMAGENET1K_V1``) or ``timm/<model>``. Default:
            those of the model's pretrained backbone, when it has one (adopted at setup and saved
            in checkpoints), else the options below.
        mean: per-channel normalisation mean (default ImageNet's).
        std: per-channel normalisation standard deviation (default ImageNet's).
        batch_size: images per batch.
        num_workers: decoding processes (default: the number of CPU cores, at most 8).
        seed: seed of the split and of the per-epoch shuffle.
        labels_file: instead of class folders, a CSV with a column of image paths (relative to
            ``data_dir``) and the target column(s): a label list (``cat|outdoor``, multi-label),
            several 0/1 columns (multi-label), numbers (regression) or classes. ``val_fraction``
            of its rows are held out (seeded; stratified for classes).
        path_column: the column of image paths in ``labels_file``.
        target: the target column(s) of ``labels_file``.
        task: ``binary``, ``multiclass``, ``multilabel`` or ``regression`` for ``labels_file``;
            default: inferred from the target (see :mod:`dlzoo.data.targets`).
        label_delimiter: what separates labels in a label list.
        log_target: regression on ``log1p`` of the target, inverted at every output.
    """

    def __init__(
        self,
        data_dir: str,
        train_dir: str = "train",
        val_dir: str | None = "val",
        test_dir: str | None = None,
        predict_dir: str | None = None,
        val_fraction: float = 0.2,
        image_size: int = 224,
        resize_size: int = 255,
        augment: bool = False,
        preprocessing: str | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        batch_size: int = 32,
        num_workers: int | None = None,
        seed: int = 2020,
        labels_file: str | None = None,
        path_column: str = "file",
        target: str | list[str] = "label",
        task: TaskName | None = None,
        label_delimiter: str = "|",
        log_target: bool = False,
    ) -> None:
        super().__init__()  # saves the hyperparameters
        check_task_option(task)
        self.labels_file, self.path_column = labels_file, path_column
        self.targets = [target] if isinstance(target, str) else list(target)
        self.task_option, self.label_delimiter, self.log_target = task, label_delimiter, log_target
        self._targets: dict[str, Any] | None = None  # fitted targets of a labels_file
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        # settings as attributes: a preset's hparams hold only its own arguments
        self.data_dir = Path(data_dir) if data_dir else None
        self.train_dir, self.val_dir, self.test_dir = train_dir, val_dir, test_dir
        self.predict_dir, self.val_fraction = predict_dir, val_fraction
        self.image_size, self.resize_size, self.augment = image_size, resize_size, augment
        self.preprocessing, self.mean, self.std = preprocessing, tuple(mean), tuple(std)
        self.batch_size, self.seed = batch_size, seed
        self.num_workers = min(8, os.cpu_count() or 1) if num_workers is None else num_workers
        self._classes: list[str] | None = None  # from the training folders, or a checkpoint
        self._labelled_rows: dict[str, tuple[list[str], torch.Tensor]] | None = None
        self._datasets: dict[str, Dataset] = {}
        self._features: dict[str, FeatureDataset] = {}
        self.skipped: dict[str, str] = {}  # unreadable files and why, once set up
        self._preprocessor: ImagePreprocessor | None = None
        self._adopted: str | None = None  # the pretrained backbone's preprocessing, if any
        if preprocessing is not None:
            pretrained_eval_settings(preprocessing)  # a bad name fails now, not after a scan

    # -------------------------------------------------------------------------------- layout
    def _root(self) -> Path:
        """``data_dir``, or its one sub-folder that holds ``train_dir`` (an archive's top folder)."""
        if self.data_dir is None:
            raise ValueError("ImageFolderDataModule needs data_dir")
        if (self.data_dir / self.train_dir).is_dir():
            return self.data_dir
        if self.data_dir.is_dir():
            found = sorted(p for p in self.data_dir.iterdir() if (p / self.train_dir).is_dir())
            if len(found) == 1:
                return found[0]
        raise FileNotFoundError(
            f"no training images: {self.data_dir / self.train_dir} does not exist. Expected "
            f"{self.data_dir}/{self.train_dir}/<class>/*.jpg (one folder per class)"
        )

    @property
    def classes(self) -> list[str]:
        """Class folders in sorted order, or the classes or labels of ``labels_file``."""
        if self.labels_file:
            return list(self.fitted_targets.get("classes") or [])
        if self._classes is None:
            folder = self._root() / self.train_dir
            found = find_classes(folder)[0]
            if len(found) < 2:
                raise ValueError(
                    f"{folder} has one class folder ({found[0]!r}): a classifier needs two or "
                    "more, each class's images in a folder of its own (or a labels_file)"
                )
            self._classes = found
        return list(self._classes)

    @property
    def fitted_targets(self) -> dict[str, Any]:
        """The target state: task, classes or labels, regression scaling."""
        if self._targets is None:
            if self.labels_file:
                self._read_labels_file()
            else:
                classes = self.classes
                self._targets = {
                    "task": classification_task(len(classes)),
                    "columns": ["label"],
                    "classes": classes,
                }
        return self._targets

    def _read_labels_file(self) -> None:
        """Files and targets of ``labels_file``: the split, the task, the fitted targets."""
        from dlzoo.data.reading import read_csv  # one CSV reader, with errors that name the file

        path = Path(self.labels_file)
        path = path if path.is_absolute() or self.data_dir is None else self.data_dir / path
        frame = read_csv(path, "labels CSV")
        absent = [c for c in [self.path_column, *self.targets] if c not in frame.columns]
        if absent:
            raise ValueError(
                f"{path} has no column {absent[0]!r} (columns: {', '.join(map(str, frame.columns))})"
                "; set path_column / target"
            )
        empty = frame.index[frame[self.targets].isna().any(axis=1)]
        if len(empty):
            lines = ", ".join(str(i + 2) for i in empty[:5])
            raise ValueError(f"{path}: an empty target on line(s) {lines}")
        root = self.data_dir or path.parent
        files = [str(root / p) for p in frame[self.path_column].astype(str)]
        lost = [f for f in files if not Path(f).is_file()]
        if lost:
            raise FileNotFoundError(
                f"{path} lists {len(lost)} image(s) not found, e.g. {lost[0]} (paths are "
                f"relative to data_dir {root})"
            )
        readable, _ = readable_files(files, None, root, self.skipped)
        keep = np.flatnonzero(np.isin(files, readable))
        frame, files = frame.iloc[keep], [files[i] for i in keep]
        task = decide_task(
            self.task_option, frame, self.targets, self.label_delimiter, path.name, log
        )
        labels = frame[self.targets[0]].astype(str).to_numpy()
        stratify = labels if TASKS[task].classification else None
        train, val = seeded_split(
            len(files), round(self.val_fraction * len(files)), self.seed, stratify
        )
        self._targets = fit_targets(
            frame.iloc[train],
            self.targets,
            task,
            self.label_delimiter,
            self.log_target,
            str(path),
            csv_rows,
        )
        self._labelled_rows = {}
        for name, rows in (("train", train), ("val", val)):
            targets = encode_targets(frame.iloc[rows], self._targets, str(path), csv_rows)
            self._labelled_rows[name] = ([files[i] for i in rows], targets)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    in_channels = 3

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, self.eval_settings()["crop_size"], self.eval_settings()["crop_size"])

    # ---------------------------------------------------------------------------- transforms
    def eval_settings(self) -> dict[str, Any]:
        """How evaluation images are prepared, decided here only: resize the shorter side to
        ``resize_size`` (``interpolation``), centre-crop ``crop_size``, scale to [0, 1],
        normalise with ``mean``/``std``. Those of the pretrained weights when there are any:
        ``preprocessing`` if given, else the backbone's own (see :meth:`adopt_preprocessing`)."""
        spec = self.preprocessing or self._adopted
        if spec is not None:
            return pretrained_eval_settings(spec)
        return {
            "resize_size": self.resize_size,
            "crop_size": self.image_size,
            "interpolation": InterpolationMode.BILINEAR.value,
            "mean": list(self.mean),
            "std": list(self.std),
        }

    def eval_transform(self) -> Callable:
        """The transforms of validation, test, predict and served images (and cached features)."""
        return self.preprocessor.transform

    @property
    def preprocessor(self) -> ImagePreprocessor:
        """The evaluation preprocessing of images (the pretrained weights' when adopted)."""
        settings = self.eval_settings()
        if self._preprocessor is None or self._preprocessor.settings != settings:
            self._preprocessor = ImagePreprocessor(settings)
        return self._preprocessor

    def train_transform(self) -> Callable:
        """Evaluation transforms, or with ``augment`` a random crop and flip of the same size and
        normalisation."""
        if not self.augment:
            return self.eval_transform()
        settings = self.eval_settings()
        return v2.Compose(
            [
                v2.RandomResizedCrop(
                    settings["crop_size"],
                    interpolation=InterpolationMode(settings["interpolation"]),
                    antialias=True,
                ),
                v2.RandomHorizontalFlip(),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(settings["mean"], settings["std"]),
            ]
        )

    # ---------------------------------------------------------------------------------- data
    def adopt_preprocessing(self, spec: str | None) -> None:
        """Prepare images as pretrained weights ``spec`` were trained (see ``preprocessing``),
        unless ``preprocessing`` says otherwise. The dlzoo command hands the fine-tuner's here
        (:meth:`connect`) before the images are read; datasets made before with other
        transforms are made again."""
        if spec is None or spec == self._adopted:
            return
        if self.preprocessing is not None:
            if self.preprocessing != spec:
                log.info(
                    "images prepared as %s (preprocessing), not as %s", self.preprocessing, spec
                )
            return
        settings = pretrained_eval_settings(spec)
        self._adopted = spec
        self._datasets.clear()  # made with other transforms: made again when next needed
        self._features.clear()
        log.info(
            "images prepared as %s was trained: resize %d (%s), crop %d, mean %s, std %s",
            spec,
            settings["resize_size"],
            settings["interpolation"],
            settings["crop_size"],
            [round(m, 3) for m in settings["mean"]],
            [round(s, 3) for s in settings["std"]],
        )

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict" and self.predict_dir:
            self._predict_files()  # new images only: no training folders needed
            return
        if "train" in self._datasets:
            return
        if self.labels_file:
            if self._labelled_rows is None:
                self._read_labels_file()
            train_tf, eval_tf = self.train_transform(), self.eval_transform()
            for name, (files, targets) in self._labelled_rows.items():
                self._datasets[name] = ImageFiles(
                    files, targets, train_tf if name == "train" else eval_tf
                )
            if self.predict_dir:
                self._predict_files()
            return
        root, classes = self._root(), self.classes
        train_files, train_labels = labelled_files(root / self.train_dir, classes, self.skipped)
        train_tf, eval_tf = self.train_transform(), self.eval_transform()
        val_folder = self._val_folder(root)
        if val_folder is not None:
            val_files, val_labels = labelled_files(val_folder, classes, self.skipped)
        else:
            files, labels = np.array(train_files), np.array(train_labels)
            train_idx, val_idx = seeded_split(len(files), self.val_fraction, self.seed, labels)
            train_files, train_labels = files[train_idx].tolist(), labels[train_idx].tolist()
            val_files, val_labels = files[val_idx].tolist(), labels[val_idx].tolist()
        self._datasets["train"] = ImageFiles(train_files, train_labels, train_tf)
        self._datasets["val"] = ImageFiles(val_files, val_labels, eval_tf)
        if self.test_dir:
            self._datasets["test"] = ImageFiles(
                *labelled_files(root / self.test_dir, classes, self.skipped), eval_tf
            )
        if self.predict_dir:
            self._predict_files()

    def _predict_files(self) -> None:
        if "predict" in self._datasets:
            return
        folder = Path(self.predict_dir)
        if not folder.is_dir():
            raise FileNotFoundError(f"predict_dir not found: {folder}")
        files = sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {folder}")
        files, _ = readable_files(files, None, folder, self.skipped)
        self._datasets["predict"] = ImageFiles(files, None, self.eval_transform())
        self.predict_row_ids = [str(Path(p).relative_to(folder)) for p in files]

    def _val_folder(self, root: Path) -> Path | None:
        """The validation folder, or ``None`` to hold out ``val_fraction`` of the training images."""
        if not self.val_dir:
            return None
        if (root / self.val_dir).is_dir():
            return root / self.val_dir
        log.warning(
            "no validation folder %s: holding out %.0f%% of %s for validation",
            root / self.val_dir,
            100 * self.val_fraction,
            root / self.train_dir,
        )
        return None

    # ------------------------------------------------------------------------ cached features
    def check_feature_caching(self) -> None:
        if self.augment:
            raise ValueError(
                "cached features need augment=False: augmented images differ every epoch"
            )

    def cache_features(
        self,
        extractor: Callable[[torch.Tensor], torch.Tensor],
        device: torch.device | str = "cpu",
        batch_size: int | None = None,
    ) -> None:
        """Run ``extractor`` (a frozen backbone) over the train and val images once.

        From then on the train and val loaders yield ``(BackboneFeatures, label)`` batches.
        Needs ``augment=False``: cached features cannot change from epoch to epoch.
        """
        self.check_feature_caching()
        self.setup("fit")
        for split in ("train", "val"):
            loader = ordered_loader(
                self._datasets[split],
                batch_size or self.batch_size,
                num_workers=self.num_workers,
                pin_memory=torch.device(device).type == "cuda",
            )
            features, labels = [], []
            with torch.inference_mode():
                for images, targets in loader:
                    features.append(extractor(images.to(device)).float().cpu())
                    labels.append(targets)
            self._features[split] = FeatureDataset(torch.cat(features), torch.cat(labels))
            log.info("cached %s features of %d images", split, len(self._features[split]))

    # ------------------------------------------------------------------------------- loaders
    def _loader(self, split: str, shuffle: bool = False) -> DataLoader:
        if split in self._features:
            return batch_loader(self._features[split], self.batch_size, shuffle, self.seed)
        if split not in self._datasets:
            self.setup("fit")
        if split not in self._datasets:
            raise ValueError(f"no {split} images: pass {split}_dir")
        kwargs = {"num_workers": self.num_workers, "pin_memory": torch.cuda.is_available()}
        if split == "predict":
            return ordered_loader(self._datasets[split], self.batch_size, **kwargs)
        return batch_loader(
            self._datasets[split],
            self.batch_size,
            shuffle=shuffle,
            seed=self.seed,
            collate_fn=default_collate,
            **kwargs,
        )

    def predict_dataloader(self) -> DataLoader:
        if self.predict_dir:
            self._predict_files()
        if "predict" not in self._datasets:
            self.setup("fit")
            files = self._datasets["val"].files
            root = self.data_dir if self.labels_file else self._root()
            self.predict_row_ids = [str(Path(p).relative_to(root)) for p in files]
            self._datasets["predict"] = ImageFiles(files, None, self._datasets["val"].transform)
        return self._loader("predict")

    # ---------------------------------------------------------- saved with every checkpoint
    #: options that decide what the model sees: fixed by a checkpoint
    input_options = ("image_size", "resize_size", "preprocessing", "mean", "std", "log_target")

    def state_dict(self) -> dict[str, Any]:
        return {
            "classes": self.classes,
            "preprocessing": self.preprocessing or self._adopted,
            "targets": self.fitted_targets,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._classes = list(state_dict["classes"])
        self._targets = state_dict.get("targets")  # None in 0.1.0.dev0's: from the classes
        check_restored_task(self.task_option, (self._targets or {}).get("task"))
        if self.preprocessing is None:  # what the model was trained with (older: no entry)
            self._adopted = state_dict.get("preprocessing")
