"""FeedForwardNet on the classification base: training moves metrics, reloads predict the same."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from dlzoo.data import TabularDataModule
from dlzoo.models import FeedForwardNet

METRICS = ("loss", "acc", "precision", "recall", "f1", "auroc")


def trainer_for(tmp_path: Path, epochs: int = 5, **kwargs) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


def fitted(csv: Path, tmp_path: Path, epochs: int = 5, **model_args):
    pl.seed_everything(0, verbose=False)
    dm = TabularDataModule(filename=str(csv), target="target", batch_size=32)
    args = {"hidden_sizes": [32, 32], "lr": 0.01, **model_args}
    model = FeedForwardNet(num_features=dm.num_features, num_classes=dm.num_classes, **args)
    trainer = trainer_for(tmp_path, epochs)
    trainer.fit(model, datamodule=dm)
    return trainer, model, dm


def test_architecture_follows_arguments() -> None:
    model = FeedForwardNet(
        num_features=10,
        hidden_sizes=(96, 192, 384),
        dropout=0.1,
        input_dropout=0.2,
        batch_norm=True,
        activation="gelu",
    )
    linear = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [
        (10, 96),
        (96, 192),
        (192, 384),
        (384, 1),
    ]
    assert sum(isinstance(m, nn.BatchNorm1d) for m in model.modules()) == 3
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.2, 0.1, 0.1, 0.1]
    assert sum(isinstance(m, nn.GELU) for m in model.modules()) == 3
    book = FeedForwardNet(num_features=51)  # the book's net: 51-96-192-384-1
    assert (
        sum(p.numel() for p in book.parameters())
        == 51 * 96 + 96 + 96 * 192 + 192 + 192 * 384 + 384 + 385
    )


def test_bad_choices_raise() -> None:
    with pytest.raises(ValueError, match="unknown activation 'swishy'"):
        FeedForwardNet(num_features=3, activation="swishy")
    with pytest.raises(ValueError, match="optimizer must be one of"):
        FeedForwardNet(num_features=3, optimizer="adamax")
    with pytest.raises(ValueError, match="lr_scheduler must be one of"):
        FeedForwardNet(num_features=3, lr_scheduler="warmup")
    with pytest.raises(ValueError, match="num_features must be a positive int, got None"):
        FeedForwardNet(num_features=None)
    with pytest.raises(ValueError, match="num_classes must be at least 2"):
        FeedForwardNet(num_features=3, num_classes=1)


def test_fit_beats_chance_and_logs_every_metric(csv_file: Path, tmp_path: Path) -> None:
    trainer, model, dm = fitted(csv_file, tmp_path)
    logged = trainer.callback_metrics
    for stage in ("train", "val"):
        for name in METRICS:
            assert f"{stage}_{name}" in logged, f"{stage}_{name} not logged"
    assert logged["val_auroc"] > 0.85 and logged["val_acc"] > 0.75
    assert logged["train_loss"] < 0.5  # it learned: log(2) = 0.69 is chance
    results = trainer.validate(model, datamodule=dm, verbose=False)[0]
    assert results["val_auroc"] == pytest.approx(logged["val_auroc"].item(), abs=1e-6)


def test_metrics_move_between_epochs(csv_file: Path, tmp_path: Path) -> None:
    first, *_ = fitted(csv_file, tmp_path / "a", epochs=1, lr=1e-4)
    later, *_ = fitted(csv_file, tmp_path / "b", epochs=6, lr=1e-2)
    assert later.callback_metrics["val_loss"] < first.callback_metrics["val_loss"] - 0.1
    assert later.callback_metrics["val_auroc"] > first.callback_metrics["val_auroc"]


def test_multiclass(multiclass_csv: Path, tmp_path: Path) -> None:
    trainer, model, dm = fitted(multiclass_csv, tmp_path, epochs=6)
    assert model.num_outputs == 3 and not model.is_binary
    assert trainer.callback_metrics["val_acc"] > 0.6  # chance is 1/3
    out = model.predict_step(next(iter(dm.val_dataloader())), 0)
    torch.testing.assert_close(out["probs"].sum(1), torch.ones(len(out["probs"])))
    assert out["preds"].max() <= 2


def test_checkpoint_reload_gives_identical_predictions(csv_file: Path, tmp_path: Path) -> None:
    trainer, model, dm = fitted(csv_file, tmp_path, epochs=2, dropout=0.2, batch_norm=True)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    before = torch.cat([p["probs"] for p in trainer.predict(model, datamodule=dm)])
    restored = FeedForwardNet.load_from_checkpoint(path, weights_only=True)
    fresh_dm = TabularDataModule.from_checkpoint(path)  # preprocessing from the checkpoint
    after = torch.cat([p["probs"] for p in trainer_for(tmp_path).predict(restored, fresh_dm)])
    torch.testing.assert_close(after, before, rtol=0, atol=0)
    assert ((before > 0) & (before < 1)).all()


def test_checkpoint_loads_without_unpickling(csv_file: Path, tmp_path: Path) -> None:
    trainer, *_ = fitted(csv_file, tmp_path, epochs=1)
    checkpoint = torch.load(trainer.checkpoint_callback.best_model_path, weights_only=True)
    assert checkpoint["hyper_parameters"]["num_features"] == 7
    assert checkpoint["TabularDataModule"]["preprocessing"]["classes"] == ["no", "yes"]


def test_l1_and_l2_shrink_weights(csv_file: Path, tmp_path: Path) -> None:
    def weight_norm(model: FeedForwardNet, p: int) -> float:
        return sum(w.norm(p).item() for w in model.parameters() if w.ndim > 1)

    _, plain, _ = fitted(csv_file, tmp_path / "plain", epochs=4)
    trainer, l1, _ = fitted(csv_file, tmp_path / "l1", epochs=4, l1_lambda=1e-3)
    _, l2, _ = fitted(csv_file, tmp_path / "l2", epochs=4, weight_decay=0.05)
    assert weight_norm(l1, 1) < 0.8 * weight_norm(plain, 1)
    assert weight_norm(l2, 2) < 0.9 * weight_norm(plain, 2)
    assert trainer.callback_metrics["train_l1"] > 0


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd", "rmsprop"])
@pytest.mark.parametrize("scheduler", ["none", "cosine", "step", "plateau", "onecycle"])
def test_optimizers_and_schedulers(
    optimizer: str, scheduler: str, csv_file: Path, tmp_path: Path
) -> None:
    dm = TabularDataModule(filename=str(csv_file), target="target", batch_size=64)
    model = FeedForwardNet(
        num_features=dm.num_features,
        hidden_sizes=[8],
        optimizer=optimizer,
        lr_scheduler=scheduler,
        lr=0.05,
        lr_step_size=1,
        lr_gamma=0.5,
    )
    trainer = trainer_for(tmp_path, epochs=2, logger=False, enable_checkpointing=False)
    trainer.fit(model, datamodule=dm)
    optim = trainer.optimizers[0]
    assert type(optim).__name__.lower() == optimizer
    lr = optim.param_groups[0]["lr"]
    assert lr == pytest.approx(0.05) if scheduler in ("none", "plateau") else lr < 0.05


def test_bf16_mixed_on_cpu(csv_file: Path, tmp_path: Path) -> None:
    pl.seed_everything(0, verbose=False)
    dm = TabularDataModule(filename=str(csv_file), target="target", batch_size=32)
    model = FeedForwardNet(num_features=dm.num_features, hidden_sizes=[32, 32], lr=0.01)
    trainer = trainer_for(tmp_path, epochs=4, precision="bf16-mixed")
    trainer.fit(model, datamodule=dm)
    assert trainer.precision == "bf16-mixed"
    assert trainer.callback_metrics["val_auroc"] > 0.8
    assert next(model.parameters()).dtype == torch.float32  # master weights stay fp32
