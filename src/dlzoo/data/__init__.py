"""dlzoo DataModules: one file per dataset family (see ``dlzoo.list_datamodules()``)."""

from dlzoo.data.download import (
    ChecksumError,
    DownloadError,
    default_cache_dir,
    download_file,
    extract_archive,
)
from dlzoo.data.tabular import BankMarketingDataModule, TabularDataModule

__all__ = [
    "BankMarketingDataModule",
    "ChecksumError",
    "DownloadError",
    "TabularDataModule",
    "default_cache_dir",
    "download_file",
    "extract_archive",
]
