"""dlzoo DataModules: one file per dataset family (see ``dlzoo.list_datamodules()``)."""

from dlzoo.data.download import (
    ChecksumError,
    DownloadError,
    default_cache_dir,
    download_file,
    extract_archive,
)
from dlzoo.data.images import CatsDogsDataModule, ImageFolderDataModule
from dlzoo.data.imdb import IMDBDataModule
from dlzoo.data.mnist import MNISTDataModule
from dlzoo.data.tabular import BankMarketingDataModule, TabularDataModule
from dlzoo.data.text import TextClassificationDataModule

__all__ = [
    "BankMarketingDataModule",
    "CatsDogsDataModule",
    "ChecksumError",
    "DownloadError",
    "IMDBDataModule",
    "ImageFolderDataModule",
    "MNISTDataModule",
    "TabularDataModule",
    "TextClassificationDataModule",
    "default_cache_dir",
    "download_file",
    "extract_archive",
]
