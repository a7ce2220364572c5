"""One test per entry of ``dlzoo.cli.private.PRIVATE_APIS``: each fails loudly when Lightning or
jsonargparse changes the private behaviour dlzoo relies on."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.cli import LightningCLI

from dlzoo.cli.main import DlzooCLI
from dlzoo.cli.private import PRIVATE_APIS
from dlzoo.models import FeedForwardNet


def test_every_private_api_has_a_test_here() -> None:
    assert len(PRIVATE_APIS) == 5  # one test below per entry: add one with each new entry


def test_cli_checkpoints_record_the_model_class_path(config_file: Path, tmp_path: Path) -> None:
    from conftest import run_dirs
    from dlzoo.cli import main

    main(["fit", "--config", str(config_file), "--trainer.max_epochs", "1"])
    (run,) = run_dirs(tmp_path / "runs")
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["hyper_parameters"]["_class_path"].endswith("FeedForwardNet")


def test_a_checkpoint_naming_an_unknown_class_is_refused_before_lightning_imports_it(
    config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # LightningCLI (>= 2.5) would load --ckpt_path's hyperparameters itself and import the
    # class they name; dlzoo holds the path back while it parses, so its own check decides
    from conftest import run_dirs
    from dlzoo.cli import main
    from dlzoo.cli.checkpoint import CheckpointError

    main(["fit", "--config", str(config_file), "--trainer.max_epochs", "1"])
    (run,) = run_dirs(tmp_path / "runs")
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint["hyper_parameters"]["_class_path"] = "nowhere_module.Evil"
    torch.save(checkpoint, tmp_path / "evil.ckpt")
    imported = []
    monkeypatch.setattr(
        LightningCLI, "_parse_ckpt_path", lambda self: imported.append(1), raising=False
    )
    with pytest.raises(CheckpointError, match=r"'nowhere_module\.Evil', which is neither"):
        main(
            [
                "predict",
                "--config",
                str(run / "config.yaml"),
                "--ckpt_path",
                str(tmp_path / "evil.ckpt"),
            ]
        )
    args = ["validate", "--config", str(run / "config.yaml")]
    main([*args, "--ckpt_path", str(run / "checkpoints" / "last.ckpt")])
    assert imported == [1]  # Lightning still has that step, and dlzoo left it nothing to read


def test_keep_own_hparams_edits_the_hparams_a_checkpoint_saves() -> None:
    model = FeedForwardNet(num_features=3)
    model.hparams["vocab_size"] = 7  # what LightningCLI records of a size the class lacks
    from dlzoo.models.base import keep_own_hparams

    keep_own_hparams(model)
    assert "vocab_size" not in model.hparams and "num_features" in model.hparams


def test_pl_module_is_importable_for_the_cli() -> None:
    assert issubclass(DlzooCLI, LightningCLI) and pl.LightningModule


def test_a_datamodules_state_is_saved_under_its_qualname(tmp_path: Path) -> None:
    from dlzoo.data.batching import TensorBatchDataset, batch_loader

    class Rows(pl.LightningDataModule):
        def train_dataloader(self) -> torch.utils.data.DataLoader:
            rows = TensorBatchDataset(torch.randn(8, 3), torch.randint(0, 2, (8,)).float())
            return batch_loader(rows, 4)

        def state_dict(self) -> dict:
            return {"fitted": [1, 2]}

    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                         default_root_dir=tmp_path, limit_val_batches=0)  # fmt: skip
    trainer.fit(FeedForwardNet(num_features=3, hidden_sizes=(4,)), datamodule=Rows())
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    checkpoint = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert checkpoint[Rows.__qualname__] == {"fitted": [1, 2]}


def test_lightning_keeps_a_distributed_sampler_and_replaces_another() -> None:
    from torch.utils.data import DataLoader

    from dlzoo.data.batching import TensorBatchDataset, batch_loader

    rows = TensorBatchDataset(torch.randn(8, 3))
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False)
    connector = trainer._data_connector
    assert not connector._requires_distributed_sampler(batch_loader(rows, 4))
    assert connector._requires_distributed_sampler(DataLoader(rows, batch_size=4))


def test_model_checkpoint_forgets_its_best_in_a_new_folder_under_its_own_state_key(
    tmp_path: Path,
) -> None:
    from lightning.pytorch.callbacks import ModelCheckpoint

    from dlzoo.cli.checkpoint import RunCheckpoint

    before = ModelCheckpoint(dirpath=tmp_path / "version_0", monitor="val_auroc", mode="max")
    before.best_model_score = torch.tensor(0.9)
    state = before.state_dict()
    assert {"dirpath", "best_k_models", "best_model_path", "kth_best_model_path"} <= set(state)
    after = ModelCheckpoint(dirpath=tmp_path / "version_1", monitor="val_auroc", mode="max")
    with pytest.warns(UserWarning, match="dirpath has changed"):
        after.load_state_dict(state)
    assert after.best_model_score is None  # what RunCheckpoint is there for
    ours = RunCheckpoint(dirpath=tmp_path / "version_1", monitor="val_auroc", mode="max")
    assert ours.state_key.startswith("ModelCheckpoint{") and ours.state_key == after.state_key
