"""Run artifacts: loss history and plots, per-epoch seeding, and the prediction file."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pandas as pd
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger

from dlzoo.callbacks import EpochSeed, PredictionWriter, RunArtifacts
from dlzoo.data import TabularDataModule
from dlzoo.models import FeedForwardNet


def fit(csv: Path, root: Path, epochs: int = 3, **trainer_args):
    pl.seed_everything(0, verbose=False)
    dm = TabularDataModule(filename=str(csv), target="target", batch_size=32)
    model = FeedForwardNet(
        num_features=dm.num_features, num_classes=dm.num_classes, hidden_sizes=[16], lr=0.01
    )
    artifacts = RunArtifacts()
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=CSVLogger(root),
        callbacks=[artifacts],
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        **trainer_args,
    )
    trainer.fit(model, datamodule=dm)
    return trainer, model, dm, artifacts


def test_loss_history_matches_logged_metrics(csv_file: Path, tmp_path: Path) -> None:
    trainer, _, _, artifacts = fit(csv_file, tmp_path)
    logged = pd.read_csv(Path(trainer.log_dir) / "metrics.csv").groupby("epoch").max()
    assert artifacts.history["epoch"] == [0, 1, 2]
    for key in ("train_loss", "val_loss"):
        assert artifacts.history[key] == logged[key].tolist()
    out = Path(trainer.log_dir)
    assert {"loss.png", "roc.png", "confusion_matrix.png"} <= {p.name for p in out.iterdir()}


def test_multiclass_run_plots_a_confusion_matrix_and_no_roc(
    multiclass_csv: Path, tmp_path: Path
) -> None:
    trainer, *_ = fit(multiclass_csv, tmp_path, epochs=2)
    written = {p.name for p in Path(trainer.log_dir).iterdir()}
    assert "confusion_matrix.png" in written and "roc.png" not in written


def test_prediction_file_for_multiclass(multiclass_csv: Path, tmp_path: Path) -> None:
    _, model, dm, _ = fit(multiclass_csv, tmp_path, epochs=1)
    out = tmp_path / "preds.csv"
    predictor = pl.Trainer(
        accelerator="cpu",
        logger=False,
        callbacks=[PredictionWriter(str(out))],
        enable_progress_bar=False,
    )
    predictor.predict(model, datamodule=dm, return_predictions=False)
    table = pd.read_csv(out)
    assert list(table.columns) == ["row", "prob_c0", "prob_c1", "prob_c2", "label"]
    assert len(table) == len(dm._split("val"))
    assert table["row"].tolist() == dm._load_splits()["val"].index.tolist()  # file rows
    probs = table[["prob_c0", "prob_c1", "prob_c2"]].to_numpy()
    assert abs(probs.sum(axis=1) - 1).max() < 1e-5
    assert (table["label"] == [f"c{i}" for i in probs.argmax(axis=1)]).all()


def test_epoch_seed_depends_only_on_seed_epoch_and_rank() -> None:
    class Stub:
        current_epoch, global_rank = 3, 0

    callback = EpochSeed(seed=5)
    callback.on_train_epoch_start(Stub(), None)
    first = torch.rand(3)
    torch.rand(100)  # whatever ran before must not matter
    callback.on_train_epoch_start(Stub(), None)
    assert torch.equal(torch.rand(3), first)
    Stub.current_epoch = 4
    callback.on_train_epoch_start(Stub(), None)
    assert not torch.equal(torch.rand(3), first)


class _Scored(pl.LightningModule):
    """Validation scores set per epoch: 0.9, then worse, then better."""

    scores = (0.9, 0.5, 0.95)

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)

    def training_step(self, batch: list[torch.Tensor], index: int) -> torch.Tensor:
        return self.layer(batch[0]).sum()

    def validation_step(self, batch: list[torch.Tensor], index: int) -> None:
        self.log("val_score", self.scores[self.current_epoch])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(2, 1)))

    val_dataloader = train_dataloader


def test_a_run_resumed_into_a_new_folder_keeps_its_best_checkpoint(tmp_path: Path) -> None:
    from dlzoo.cli.checkpoint import RunCheckpoint

    def fit(version: int, epochs: int, resume: Path | None) -> Path:
        folder = tmp_path / f"version_{version}"
        best = RunCheckpoint(folder, "best-{epoch}", monitor="val_score", mode="max")
        last = RunCheckpoint(folder, "last", monitor=None, enable_version_counter=False)
        trainer = pl.Trainer(max_epochs=epochs, callbacks=[best, last], logger=False,
                             enable_progress_bar=False, accelerator="cpu")  # fmt: skip
        trainer.fit(_Scored(), ckpt_path=resume)
        assert best.best_model_path == str(folder / f"best-epoch={max_at(epochs)}.ckpt")
        return folder

    def max_at(epochs: int) -> int:
        return max(range(epochs), key=lambda epoch: _Scored.scores[epoch])

    first = fit(0, 1, None)
    worse = fit(1, 2, first / "last.ckpt")  # epoch 1 scores 0.5: epoch 0 stays the best
    assert sorted(p.name for p in worse.iterdir()) == ["best-epoch=0.ckpt", "last.ckpt"]
    assert sorted(p.name for p in first.iterdir()) == ["best-epoch=0.ckpt", "last.ckpt"]
    better = fit(2, 3, worse / "last.ckpt")  # epoch 2 scores 0.95: it replaces the copy
    assert sorted(p.name for p in better.iterdir()) == ["best-epoch=2.ckpt", "last.ckpt"]
    assert sorted(p.name for p in worse.iterdir()) == ["best-epoch=0.ckpt", "last.ckpt"]
    state = torch.load(better / "last.ckpt", weights_only=True)["callbacks"]
    (key,) = [k for k in state if "val_score" in k]
    assert key.startswith("ModelCheckpoint{")
    assert float(state[key]["best_model_score"]) == pytest.approx(0.95)
