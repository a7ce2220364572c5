"""dlzoo DataModules: one file per dataset family (see ``dlzoo.list_datamodules()``).

The names below are imported on first use, so that ``dlzoo.data.preprocess`` (what a served
bundle needs) loads without Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "BankMarketingDataModule": "dlzoo.data.bank",
    "CatsDogsDataModule": "dlzoo.data.cats_dogs",
    "ChecksumError": "dlzoo.data.download",
    "DownloadError": "dlzoo.data.download",
    "IMDBDataModule": "dlzoo.data.imdb",
    "ImageFolderDataModule": "dlzoo.data.images",
    "MNISTDataModule": "dlzoo.data.mnist",
    "TabularDataModule": "dlzoo.data.tabular",
    "TextClassificationDataModule": "dlzoo.data.text",
    "default_cache_dir": "dlzoo.data.download",
    "download_file": "dlzoo.data.download",
    "extract_archive": "dlzoo.data.download",
}
#: the modules whose DataModules register themselves (``dlzoo.registry`` imports them)
DATAMODULE_MODULES = (
    "dlzoo.data.tabular",
    "dlzoo.data.bank",
    "dlzoo.data.images",
    "dlzoo.data.cats_dogs",
    "dlzoo.data.mnist",
    "dlzoo.data.text",
    "dlzoo.data.imdb",
)


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_NAMES})


__all__ = sorted(_NAMES)
