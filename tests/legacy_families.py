"""The seven model families as trained by dlzoo 0.1.0.dev0 (commit 0dde946), for the
old-checkpoint fixtures in ``tests/fixtures/legacy``.

``tests/fixtures/make_legacy.py`` ran each entry once with that release's ``dlzoo fit`` and kept
the checkpoint, the validation metrics and the predictions; ``tests/test_legacy.py`` runs
``dlzoo validate`` and ``dlzoo predict`` with today's code on the same data and compares.
``{data}`` is the fixture data folder, ``{cache}`` a scratch folder.
"""

from __future__ import annotations

TABULAR = [
    "--data",
    "dlzoo.data.TabularDataModule",
    "--data.filename",
    "{data}/rows.csv",
    "--data.target",
    "target",
    "--data.batch_size",
    "16",
]
IMAGES = [
    "--data",
    "dlzoo.data.ImageFolderDataModule",
    "--data.data_dir",
    "{data}/images",
    "--data.val_dir",
    "validation",
    "--data.image_size",
    "16",
    "--data.resize_size",
    "18",
    "--data.batch_size",
    "4",
    "--data.num_workers",
    "0",
]
TEXT = [
    "--data",
    "dlzoo.data.TextClassificationDataModule",
    "--data.train_file",
    "{data}/reviews.csv",
    "--data.tokenizer",
    "simple",
    "--data.batch_size",
    "8",
    "--data.val_fraction",
    "0.25",
    "--data.cache_dir",
    "{cache}",
]
DIGITS = [
    "--data",
    "dlzoo.data.MNISTDataModule",
    "--data.data_dir",
    "{data}/mnist",
    "--data.download",
    "false",
    "--data.normalize",
    "false",
    "--data.batch_size",
    "16",
]

FAMILIES: dict[str, list[str]] = {
    "ffn": ["--model", "dlzoo.models.FeedForwardNet", "--model.hidden_sizes", "[8]", *TABULAR],
    "convnet": [
        "--model",
        "dlzoo.models.ConvNet",
        "--model.channels",
        "[4]",
        "--model.head_sizes",
        "[8]",
        *IMAGES,
    ],
    "finetune": [
        "--model",
        "dlzoo.models.FineTuneClassifier",
        "--model.backbone",
        "timm/test_efficientnet",
        "--model.weights",
        "null",
        "--model.head_sizes",
        "[8]",
        *IMAGES,
    ],
    "rnn": [
        "--model",
        "dlzoo.models.RNNClassifier",
        "--model.embedding_dim",
        "8",
        "--model.hidden_size",
        "8",
        *TEXT,
    ],
    "improved_rnn": [
        "--model",
        "dlzoo.models.ImprovedRNN",
        "--model.embedding_dim",
        "8",
        "--model.hidden_size",
        "8",
        *TEXT,
    ],
    "transformer": [
        "--model",
        "dlzoo.models.TransformerClassifier",
        "--model.embedding_dim",
        "8",
        "--model.num_heads",
        "2",
        "--model.num_layers",
        "1",
        "--model.feedforward_dim",
        "16",
        "--model.max_length",
        "64",
        *TEXT,
    ],
    "autoencoder": [
        "--model",
        "dlzoo.models.AutoEncoder",
        "--model.hidden_sizes",
        "[16]",
        "--model.latent_dim",
        "4",
        *DIGITS,
    ],
}


def family_args(name: str, data: str, cache: str) -> list[str]:
    return [a.format(data=data, cache=cache) for a in FAMILIES[name]]
