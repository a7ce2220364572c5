"""MNIST handwritten digits (book chapter 6): the official IDX files or Kaggle's ``train.csv``.

All 70,000 images fit in memory as ``uint8`` (55 MB), so batches are slices of one tensor and
scaling, normalisation and augmentation run per batch on the training device
(``on_after_batch_transfer``), not per image in a worker.
"""

from __future__ import annotations

import gzip
import logging
import math
import shutil
import zlib
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from dlzoo.data.base import DataModule, seeded_split
from dlzoo.data.batching import TensorBatchDataset, batch_loader, ordered_loader
from dlzoo.data.download import default_cache_dir
from dlzoo.data.preprocess.digits import (  # MNIST_MEAN/STD: re-exported, public here
    MNIST_MEAN,
    MNIST_STD,
    PIXELS,
    DigitsPreprocessor,
    pixels_to_images,
)
from dlzoo.registry import register_datamodule

log = logging.getLogger(__name__)

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"


def read_digits_csv(path: str | Path, require_label: bool = True) -> tuple[torch.Tensor, ...]:
    """Images ``(N, 1, 28, 28)`` uint8 (and labels) from a Kaggle digit-recognizer CSV.

    The layout is a ``label`` column (absent in Kaggle's ``test.csv``) and 784 pixel columns
    (``pixel0`` ... ``pixel783``), values 0-255.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"digits CSV not found: {path}")
    frame = pd.read_csv(path)
    has_label = "label" in frame.columns
    if require_label and not has_label:
        raise ValueError(f"{path} has no 'label' column (Kaggle digit-recognizer train.csv layout)")
    pixels = frame.drop(columns="label") if has_label else frame
    if pixels.shape[1] != PIXELS:
        raise ValueError(
            f"{path} has {pixels.shape[1]} pixel columns; a 28x28 digit needs {PIXELS} "
            "(label, pixel0 ... pixel783)"
        )
    images = pixels_to_images(pixels.to_numpy(), lambda row: f"{path} line {row + 2}")
    if not has_label:
        return (images,)
    labels = frame["label"].to_numpy()
    if not np.isin(labels, np.arange(10)).all():
        row = int(np.argwhere(~np.isin(labels, np.arange(10)))[0][0])
        raise ValueError(f"{path} line {row + 2}: label {labels[row].item()!r} is not a digit 0-9")
    return images, torch.from_numpy(labels.astype(np.int64))


def random_affine(
    images: torch.Tensor, degrees: float = 10.0, translate: float = 0.1, scale: float = 0.1
) -> torch.Tensor:
    """A different small rotation, shift and zoom for every image of a float batch, on its device."""
    n = images.shape[0]
    rand = torch.rand(n, 4, device=images.device) * 2 - 1  # uniform in [-1, 1)
    angle = rand[:, 0] * math.radians(degrees)
    zoom = 1 + rand[:, 1] * scale
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [
            torch.stack([cos, -sin, rand[:, 2] * translate * 2], dim=1),
            torch.stack([sin, cos, rand[:, 3] * translate * 2], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, align_corners=False, padding_mode="zeros")


@register_datamodule("mnist")
class MNISTDataModule(DataModule):
    """MNIST digits: 10 classes, ``(1, 28, 28)`` images.

    Args:
        data_dir: torchvision's ``root``: the IDX files sit in ``data_dir/MNIST/raw/`` (``.gz`` or
            extracted). Default: ``$DLZOO_DATA/mnist``.
        csv_file: read a Kaggle digit-recognizer ``train.csv`` (label + 784 pixels) instead of the
            IDX files.
        validation: ``split`` holds out ``val_fraction`` of the training images, stratified and
            seeded (the book: 80/20, seed 2020); ``test`` validates on the official test set.
        val_fraction: share of the training images held out when ``validation="split"``.
        test_file: a labelled digits CSV for ``dlzoo test`` when reading CSVs (the IDX test set
            is used otherwise).
        predict_file: a digits CSV (Kaggle ``test.csv``: pixels, label optional) for
            ``dlzoo predict``; default: the test set, else the validation split.
        normalize: scale to the MNIST mean/std (classifiers); ``False`` gives pixels in [0, 1]
            (autoencoders with a sigmoid output).
        augment: random rotation (up to 10 degrees), shift (10 %) and zoom (10 %) per training
            image.
        download: fetch the IDX files with torchvision when they are missing.
        batch_size: images per batch.
        num_workers: DataLoader workers (0 is fastest: batches are slices of one tensor).
        seed: seed of the split and of the per-epoch shuffle.
    """

    def __init__(
        self,
        data_dir: str | None = None,
        csv_file: str | None = None,
        validation: Literal["split", "test"] = "split",
        val_fraction: float = 0.2,
        test_file: str | None = None,
        predict_file: str | None = None,
        normalize: bool = True,
        augment: bool = False,
        download: bool = True,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 2020,
    ) -> None:
        super().__init__()  # saves the hyperparameters
        if validation not in ("split", "test"):
            raise ValueError(f"validation must be 'split' or 'test', got {validation!r}")
        if validation == "split" and not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        if validation == "test" and csv_file and not test_file:
            raise ValueError("validation='test' with csv_file needs a labelled test_file")
        self.data_dir = Path(data_dir) if data_dir else default_cache_dir() / "mnist"
        self._splits: dict[str, TensorBatchDataset] = {}

    # sizes the CLI links into the model
    num_classes = 10
    #: the model's input depends on it: a checkpoint's value may not change
    input_options = ("normalize",)
    num_features = PIXELS
    in_channels = 1
    input_shape = (1, 28, 28)
    classes = [str(digit) for digit in range(10)]

    @property
    def normalize(self) -> bool:
        return bool(self.hparams.normalize)

    @property
    def raw_dir(self) -> Path:
        return self.data_dir / "MNIST" / "raw"

    def _missing_idx(self, splits: tuple[str, ...] = ("train", "test")) -> list[str]:
        names = [name for split in splits for name in IDX_FILES[split]]
        for name in names:  # accept the .gz files alone: extract them as torchvision would
            gz, raw = self.raw_dir / f"{name}.gz", self.raw_dir / name
            # a .gz newer than its extracted file replaces it (a fixed or re-downloaded file)
            stale = raw.is_file() and gz.is_file() and gz.stat().st_mtime > raw.stat().st_mtime
            if (not raw.is_file() or stale) and gz.is_file():
                part = raw.with_suffix(".part")
                try:
                    with gzip.open(gz, "rb") as src, open(part, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                except (OSError, EOFError, zlib.error) as err:
                    part.unlink(missing_ok=True)
                    raise ValueError(
                        f"{gz} is not a valid gzip file ({type(err).__name__}: {err}): delete it "
                        f"and download it again from {MNIST_URL}{name}.gz"
                    ) from None
                part.replace(raw)
        return [name for name in names if not (self.raw_dir / name).is_file()]

    def prepare_data(self) -> None:
        hp = self.hparams
        if self.trainer is not None and self.trainer.predicting and hp.predict_file:
            return  # predicting new digits needs no training files
        if hp.csv_file:
            for path in (hp.csv_file, hp.test_file, hp.predict_file):
                if path and not Path(path).is_file():
                    raise FileNotFoundError(f"digits CSV not found: {path}")
            return
        missing = self._missing_idx()
        if not missing:
            return
        if hp.download:
            from torchvision.datasets import MNIST

            try:
                MNIST(str(self.data_dir), train=True, download=True)
            except (RuntimeError, OSError) as err:
                log.warning("MNIST download failed: %s", err)
            missing = self._missing_idx()
        if missing:
            raise FileNotFoundError(
                f"MNIST not found in {self.raw_dir} and it could not be downloaded"
                f"{'' if hp.download else ' (download=False)'}: missing "
                f"{', '.join(name + '.gz' for name in missing)}. Get them from {MNIST_URL} (or "
                "any MNIST mirror) and place them there, or pass --data.init_args.data_dir to a "
                "folder whose MNIST/raw holds them."
            )

    def _read_idx(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        from torchvision.datasets.mnist import read_image_file, read_label_file

        images_name, labels_name = IDX_FILES[split]
        try:
            images = read_image_file(str(self.raw_dir / images_name))
            labels = read_label_file(str(self.raw_dir / labels_name))
        except (AssertionError, ValueError, RuntimeError) as err:
            raise ValueError(
                f"{self.raw_dir}: {split} IDX files are not valid MNIST: {err}"
            ) from None
        if len(images) != len(labels):
            raise ValueError(
                f"{self.raw_dir}: {len(images)} {split} images but {len(labels)} labels"
            )
        bad = torch.nonzero(labels > 9).flatten()
        if len(bad):
            raise ValueError(
                f"{self.raw_dir / labels_name}: label {int(labels[bad[0]])} of image {int(bad[0])} "
                f"(and {len(bad) - 1} more) is not a digit 0-9: the file is damaged or not MNIST"
            )
        return images.unsqueeze(1), labels.long()

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        if stage == "predict" and hp.predict_file:
            # new digits only: no training files needed
            self._splits["predict"] = TensorBatchDataset(
                read_digits_csv(hp.predict_file, require_label=False)[0]
            )
            return
        if "train" in self._splits:
            return
        if hp.csv_file:
            images, labels = read_digits_csv(hp.csv_file)
            test = read_digits_csv(hp.test_file) if hp.test_file else None
        else:
            self.prepare_data()  # a no-op when the files are there (each DDP rank checks)
            images, labels = self._read_idx("train")
            test = self._read_idx("test")
        if hp.validation == "split":
            train_idx, val_idx = seeded_split(len(labels), hp.val_fraction, hp.seed, labels.numpy())
            train_idx, val_idx = torch.from_numpy(train_idx), torch.from_numpy(val_idx)
            self._splits["train"] = TensorBatchDataset(images[train_idx], labels[train_idx])
            self._splits["val"] = TensorBatchDataset(images[val_idx], labels[val_idx])
        else:
            self._splits["train"] = TensorBatchDataset(images, labels)
            self._splits["val"] = TensorBatchDataset(*test)
        if test is not None:
            self._splits["test"] = TensorBatchDataset(*test)
        if hp.predict_file:
            self._splits["predict"] = TensorBatchDataset(
                read_digits_csv(hp.predict_file, require_label=False)[0]
            )

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader:
        if split not in self._splits:
            raise ValueError(
                f"MNISTDataModule has no {split} split: pass test_file (a labelled digits CSV) "
                "when reading csv_file"
            )
        hp = self.hparams
        if split == "predict":
            return ordered_loader(self._splits[split], hp.batch_size, hp.num_workers)
        return batch_loader(
            self._splits[split],
            hp.batch_size,
            shuffle=shuffle,
            seed=hp.seed,
            num_workers=hp.num_workers,
            pin_memory=torch.cuda.is_available(),
        )

    def predict_dataloader(self) -> DataLoader:
        if "predict" not in self._splits:
            split = "test" if "test" in self._splits else "val"
            self._splits["predict"] = TensorBatchDataset(self._splits[split].tensors[0])
        return self._loader("predict")

    def scale(self, images: torch.Tensor, augment: bool = False) -> torch.Tensor:
        """uint8 digits as the model's input: [0, 1], augmented when training, normalised (the
        preprocessor's own scaling, which serving and export use too)."""
        return DigitsPreprocessor(self.hparams.normalize).scale(
            images, random_affine if augment else None
        )

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        images, *rest = batch
        training = self.trainer is not None and self.trainer.training
        return (self.scale(images, augment=self.hparams.augment and training), *rest)

    @property
    def preprocessor(self) -> DigitsPreprocessor:
        """784 pixel values 0-255 as the model's ``(1, 28, 28)`` images."""
        return DigitsPreprocessor(self.hparams.normalize)


__all__ = ["MNIST_MEAN", "MNIST_STD", "MNISTDataModule", "random_affine", "read_digits_csv"]
