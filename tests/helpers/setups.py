"""Tiny models and DataModules with odd validation and even test sizes, for the DDP test."""

from pathlib import Path

from dlzoo.data import ImageFolderDataModule, TabularDataModule, TextClassificationDataModule
from dlzoo.models import ConvNet, FeedForwardNet, ImprovedRNN, TabMNet


def tabular(data: Path):
    # 95 rows: 19 validation rows (odd) and 20 test rows (even)
    dm = TabularDataModule(
        filename=str(data / "rows.csv"),
        target="target",
        val_fraction=0.2,
        test_fraction=0.21,
        batch_size=8,
    )
    return FeedForwardNet(num_features=dm.num_features, hidden_sizes=[8]), dm


def tabm(data: Path):
    # the tabular rows: TabM's metrics are those of its members' mean prediction
    _, dm = tabular(data)
    model = TabMNet(
        num_features=dm.num_features, numeric_quantiles=dm.numeric_quantiles, k=4, d_block=8
    )
    return model, dm


def images(data: Path):
    # 3 classes: 9 validation images (odd), 12 test images (even)
    dm = ImageFolderDataModule(
        data_dir=str(data / "images"),
        val_dir="validation",
        test_dir="test",
        image_size=16,
        resize_size=18,
        batch_size=4,
        num_workers=0,
    )
    model = ConvNet(input_shape=dm.input_shape, num_classes=3, channels=[4], head_sizes=[8])
    return model, dm


def text(data: Path):
    # 115 reviews: 23 held out for validation (odd); a test file of 20 (even)
    dm = TextClassificationDataModule(
        train_file=str(data / "reviews.csv"),
        test_file=str(data / "test_reviews.csv"),
        tokenizer="simple",
        val_fraction=0.2,
        batch_size=4,
        cache_dir=str(data / "cache"),
    )
    model = ImprovedRNN(
        vocab_size=dm.vocab_size, pad_index=dm.pad_index, embedding_dim=8, hidden_size=8
    )
    return model, dm


def regression(data: Path):
    # the tabular rows with a numeric target (x2): 19 validation and 20 test rows
    dm = TabularDataModule(
        filename=str(data / "rows.csv"),
        target="x2",
        drop_columns=["target"],
        val_fraction=0.2,
        test_fraction=0.21,
        batch_size=8,
    )
    model = FeedForwardNet(
        num_features=dm.num_features,
        task=dm.task,
        target_transform=dm.target_transform,
        hidden_sizes=[8],
    )
    return model, dm


SETUPS = {
    "tabular": tabular,
    "tabm": tabm,
    "images": images,
    "text": text,
    "regression": regression,
}
