"""``dlzoo predict``'s CSV writer."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info

from dlzoo.data.base import DataModule, output_names
from dlzoo.models.base import TaskModule

log = logging.getLogger(__name__)


class PredictionWriter(BasePredictionWriter):
    """Write ``dlzoo predict`` results to a CSV: row, class probabilities, predicted label.

    Args:
        output: the CSV to write; default ``predictions.csv`` in ``trainer.default_root_dir``.
            Under DDP each rank writes its share to ``<stem>_rank<N>.csv``.
    """

    def __init__(self, output: str | None = None) -> None:
        super().__init__(write_interval="epoch")
        self.output = output

    def path(self, trainer: pl.Trainer) -> Path:
        """``output``, else ``predictions.csv`` in ``default_root_dir`` (beside, never inside, the
        training runs under ``lightning_logs``)."""
        return (
            Path(self.output) if self.output else Path(trainer.default_root_dir) / "predictions.csv"
        )

    def write_on_epoch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        predictions: Any,
        batch_indices: Any,
    ) -> None:
        path = self.path(trainer)
        if not predictions or not isinstance(predictions[0], dict):
            return
        if not isinstance(pl_module, TaskModule):
            return  # not a dlzoo model's predictions: nothing we know how to write
        task = pl_module.task
        outputs = {key: torch.cat([p[key] for p in predictions]) for key in predictions[0]}
        decoded = task.decode(outputs, output_names(trainer.datamodule, pl_module))
        header, cells = task.csv(decoded)
        # which dataset rows these are (this rank's share under DDP), then which file rows
        rows = self._rows(trainer, batch_indices, len(decoded))
        path = self._rank_path(trainer, path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["row", *header])
            for row, values in zip(rows, cells, strict=True):
                writer.writerow([row, *values])
        rank_zero_info(f"predictions for {len(decoded)} rows written to {path}")

    @staticmethod
    def _rows(trainer: pl.Trainer, batch_indices: Any, count: int) -> list:
        """Which rows (file rows, or file names) the predictions are, in order."""
        order = [i for batch in batch_indices or [] for i in batch]
        if len(order) != count:
            order = list(range(count))
        datamodule = trainer.datamodule
        row_ids = datamodule.predict_row_ids if isinstance(datamodule, DataModule) else None
        return [row_ids[i] for i in order] if row_ids and len(row_ids) > max(order) else order

    @staticmethod
    def _rank_path(trainer: pl.Trainer, path: Path) -> Path:
        if trainer.world_size > 1:
            return path.with_name(f"{path.stem}_rank{trainer.global_rank}{path.suffix}")
        return path


__all__ = ["PredictionWriter"]
