"""The bank-marketing preset of the tabular data (book chapter 5): its CSV ships in the package."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlzoo.data.tabular import TabularDataModule
from dlzoo.registry import register_datamodule

_BANK_DIR = Path(__file__).parent / "_files"


@register_datamodule("bank_marketing")
class BankMarketingDataModule(TabularDataModule):
    """The balanced bank-marketing data of the book's chapter 5 (11,162 calls, target ``deposit``).

    The CSV ships inside dlzoo (CC BY 4.0, see ``dlzoo/data/_files/README.md``), so this works
    offline. ``drop_columns=["duration"]`` gives the realistic setup: a call's duration is only
    known after the call.

    Args:
        data_dir: where ``filename`` is (default: the copy inside dlzoo).
        filename: the CSV.
        **kwargs: splits, missing values, batching ... of :class:`TabularDataModule`.
    """

    def __init__(
        self, data_dir: str | None = None, filename: str = "bank.csv", **kwargs: Any
    ) -> None:
        super().__init__(filename=filename, target="deposit", data_dir=data_dir, **kwargs)

    def default_data_dir(self) -> Path:
        return _BANK_DIR


__all__ = ["BankMarketingDataModule"]
