"""MNISTDataModule on IDX and Kaggle-CSV files the tests write (no downloads)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torchvision.datasets import MNIST

from conftest import write_digits_csv, write_mnist_idx
from dlzoo.data import MNISTDataModule
from dlzoo.data.mnist import MNIST_MEAN, MNIST_STD


def _batch(dm: MNISTDataModule, loader) -> tuple[torch.Tensor, torch.Tensor]:
    return dm.on_after_batch_transfer(next(iter(loader)), 0)


def test_idx_files_give_images_labels_and_a_seeded_split(tmp_path: Path) -> None:
    write_mnist_idx(tmp_path, n_train=200, n_test=50)  # only the .gz files, as downloaded
    dm = MNISTDataModule(data_dir=str(tmp_path), batch_size=16, seed=3)
    dm.prepare_data()
    dm.setup("fit")
    assert (dm.num_classes, dm.input_shape, dm.num_features) == (10, (1, 28, 28), 784)
    images, labels = _batch(dm, dm.train_dataloader())
    assert images.shape == (16, 1, 28, 28) and images.dtype == torch.float32
    assert labels.dtype == torch.int64 and set(labels.tolist()) <= set(range(10))
    train, val = dm._splits["train"], dm._splits["val"]
    assert (len(train), len(val)) == (160, 40)
    # stratified: 4 of each digit held out; the label is where the bright block is
    assert torch.bincount(val.tensors[1], minlength=10).tolist() == [4] * 10
    image, label = val.tensors[0][0, 0], int(val.tensors[1][0])
    row, col = 2 + 12 * (label // 5), 1 + 5 * (label % 5)
    assert image[row + 2, col + 2] == 230
    # normalised with the MNIST mean/std
    raw = train.tensors[0][:16].float() / 255
    first = dm.on_after_batch_transfer((train.tensors[0][:16], train.tensors[1][:16]), 0)[0]
    torch.testing.assert_close(first, (raw - MNIST_MEAN) / MNIST_STD)
    # the same seed gives the same split
    again = MNISTDataModule(data_dir=str(tmp_path), seed=3)
    again.setup("fit")
    assert torch.equal(again._splits["val"].tensors[1], val.tensors[1])


def test_validation_on_the_official_test_set(tmp_path: Path) -> None:
    write_mnist_idx(tmp_path, n_train=100, n_test=30, gz=False)
    dm = MNISTDataModule(data_dir=str(tmp_path), validation="test", normalize=False)
    dm.setup("fit")
    assert (len(dm._splits["train"]), len(dm._splits["val"]), len(dm._splits["test"])) == (
        100,
        30,
        30,
    )
    images, _ = _batch(dm, dm.val_dataloader())
    assert images.min() >= 0.0 and images.max() <= 1.0  # normalize=False: pixels in [0, 1]


def test_kaggle_csv_layout(tmp_path: Path) -> None:
    csv = write_digits_csv(tmp_path / "train.csv", n=100)
    unlabelled = write_digits_csv(tmp_path / "test.csv", n=7, label=False)
    dm = MNISTDataModule(csv_file=str(csv), predict_file=str(unlabelled), batch_size=8)
    dm.prepare_data()
    dm.setup("fit")
    assert (len(dm._splits["train"]), len(dm._splits["val"])) == (80, 20)
    images, labels = _batch(dm, dm.train_dataloader())
    assert images.shape == (8, 1, 28, 28) and labels.shape == (8,)
    (predict_images,) = next(iter(dm.predict_dataloader()))
    assert predict_images.shape == (7, 1, 28, 28)
    with pytest.raises(ValueError, match="no test split: pass test_file"):
        dm.test_dataloader()


def test_malformed_csv_errors_name_the_problem(tmp_path: Path) -> None:
    path = write_digits_csv(tmp_path / "train.csv", n=20)
    frame = pd.read_csv(path)
    frame.drop(columns="pixel783").to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(ValueError, match="783 pixel columns; a 28x28 digit needs 784"):
        MNISTDataModule(csv_file=str(tmp_path / "short.csv")).setup("fit")
    frame.loc[3, "label"] = 12
    frame.to_csv(tmp_path / "label.csv", index=False)
    with pytest.raises(ValueError, match="line 5: label 12 is not a digit"):
        MNISTDataModule(csv_file=str(tmp_path / "label.csv")).setup("fit")
    frame.loc[3, "label"] = 1
    frame.loc[2, "pixel5"] = 300
    frame.to_csv(tmp_path / "pixel.csv", index=False)
    with pytest.raises(ValueError, match="line 4: pixel values must be 0-255"):
        MNISTDataModule(csv_file=str(tmp_path / "pixel.csv")).setup("fit")


def test_missing_files_offline_say_which_where_and_from_where(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(FileNotFoundError) as info:
        MNISTDataModule(data_dir=str(tmp_path), download=False).prepare_data()
    message = str(info.value)
    assert str(tmp_path / "MNIST" / "raw") in message
    assert "train-images-idx3-ubyte.gz" in message and "t10k-labels-idx1-ubyte.gz" in message
    assert "https://" in message
    # download=True on a machine where every mirror fails ends in the same error, no traceback
    monkeypatch.setattr(MNIST, "mirrors", [(tmp_path / "no-mirror").as_uri() + "/"])
    with pytest.raises(FileNotFoundError, match="could not be downloaded"):
        MNISTDataModule(data_dir=str(tmp_path), download=True).prepare_data()


def test_augmentation_only_changes_training_batches(tmp_path: Path) -> None:
    import lightning.pytorch as pl

    write_mnist_idx(tmp_path, n_train=100, n_test=20)
    dm = MNISTDataModule(data_dir=str(tmp_path), augment=True, batch_size=32)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    trainer = pl.Trainer(logger=False, accelerator="cpu")
    dm.trainer = trainer
    plain = dm.on_after_batch_transfer(batch, 0)[0]  # not training: no augmentation
    trainer.state.stage = "train"
    augmented = dm.on_after_batch_transfer(batch, 0)[0]
    assert augmented.shape == plain.shape
    assert not torch.equal(augmented, plain)
    # a small affine change: most of the image stays where it was
    assert (augmented - plain).abs().mean() < plain.abs().mean()


def test_bad_labels_and_corrupt_gzip_are_named_before_training(tmp_path: Path) -> None:
    root = write_mnist_idx(tmp_path / "m", n_train=100, n_test=10)
    raw = root / "MNIST" / "raw"
    labels = gzip.decompress((raw / "train-labels-idx1-ubyte.gz").read_bytes())
    bad = labels[: 8 + 5] + bytes([200]) + labels[8 + 6 :]
    (raw / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bad))
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte: label 200 of image 5"):
        MNISTDataModule(data_dir=str(root)).setup("fit")
    images = raw / "t10k-images-idx3-ubyte"
    images.unlink()
    gz = raw / "t10k-images-idx3-ubyte.gz"
    good = gz.read_bytes()
    gz.write_bytes(good[: len(good) // 2])  # a truncated download
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.gz is not a valid gzip file"):
        MNISTDataModule(data_dir=str(root)).prepare_data()
    assert not images.exists() and not images.with_suffix(".part").exists()
    gz.write_bytes(good)  # fixed: used at once
    (raw / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
    dm = MNISTDataModule(data_dir=str(root))
    dm.setup("fit")
    assert len(dm._splits["test"]) == 10


def test_raw_digits_are_encoded_as_a_batch_is_scaled(tmp_path: Path) -> None:
    """What `dlzoo serve` and `dlzoo export` feed the model: 784 pixels (flat or 28 x 28) become
    the images a training batch becomes, and a bad digit names its input."""
    from conftest import digit_images

    dm = MNISTDataModule(csv_file=str(write_digits_csv(tmp_path / "d.csv", n=20)))
    pixels = digit_images(np.arange(3))
    items = dm.encode_inputs([pixels[0].reshape(-1).tolist(), pixels[1].tolist(), pixels[2]])
    batch = dm.collate_inputs(items)
    expected, _ = dm.on_after_batch_transfer((torch.from_numpy(pixels[:, None]), None), 0)
    torch.testing.assert_close(batch, expected)
    with pytest.raises(ValueError, match="input 1: a 28x28 digit has 784 pixels, got 3"):
        dm.encode_inputs([pixels[0].tolist(), [1, 2, 3]])
    with pytest.raises(ValueError, match="input 0: pixel values must be 0-255"):
        dm.encode_inputs([[300] * 784])
    with pytest.raises(ValueError, match="input 0: pixel values must be numbers"):
        dm.encode_inputs([["a"] * 784])


def test_a_checkpoints_normalize_option_may_not_change(tmp_path: Path) -> None:

    dm = MNISTDataModule(data_dir=str(tmp_path), normalize=True)
    saved = {"_class_path": "dlzoo.data.mnist.MNISTDataModule", "normalize": False}
    with pytest.raises(ValueError, match=r"normalize=True .*trained with False"):
        dm.restore({"datamodule_hyper_parameters": saved})
    assert dm.restore({"datamodule_hyper_parameters": {**saved, "normalize": True}})
