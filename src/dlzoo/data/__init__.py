"""dlzoo DataModules: one file per dataset family (see ``dlzoo.list_datamodules()``)."""

from dlzoo.data.download import (
    ChecksumError,
    DownloadError,
    default_cache_dir,
    download_file,
    extract_archive,
)
from dlzoo.data.images import CatsDogsDataModule, ImageFolderDataModule
from dlzoo.data.mnist import MNISTDataModule
from dlzoo.data.tabular import BankMarketingDataModule, TabularDataModule

__all__ = [
    "BankMarketingDataModule",
    "CatsDogsDataModule",
    "ChecksumError",
    "DownloadError",
    "ImageFolderDataModule",
    "MNISTDataModule",
    "TabularDataModule",
    "default_cache_dir",
    "download_file",
    "extract_archive",
]
