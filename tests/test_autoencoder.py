"""AutoEncoder: shapes, a loss that falls, encode(), and the reconstruction grid on disk."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pandas as pd
import pytest
import torch

from conftest import write_mnist_idx
from dlzoo.data import MNISTDataModule
from dlzoo.models import AutoEncoder


def test_book_mlp_shapes_and_encode() -> None:
    model = AutoEncoder()
    widths = [m.out_features for m in model.network.encoder if isinstance(m, torch.nn.Linear)]
    widths += [m.out_features for m in model.network.decoder if isinstance(m, torch.nn.Linear)]
    assert widths == [64, 32, 64, 784]  # 784-64-32-64-784
    x = torch.rand(5, 1, 28, 28)
    assert model.encode(x).shape == (5, 32)
    out = model(x)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1  # sigmoid output


def test_conv_variant_and_bad_settings() -> None:
    model = AutoEncoder(architecture="conv", hidden_sizes=(8, 16), latent_dim=10)
    x = torch.rand(3, 1, 28, 28)
    assert model(x).shape == x.shape and model.encode(x).shape == (3, 10)
    with pytest.raises(ValueError, match="multiples of 8"):
        AutoEncoder(architecture="conv", hidden_sizes=(8, 16, 32))
    with pytest.raises(ValueError, match="use output_activation=sigmoid"):
        AutoEncoder(loss="bce", output_activation="none")


@pytest.mark.parametrize(
    "settings", [{}, {"loss": "bce"}, {"architecture": "conv", "hidden_sizes": (8, 16)}]
)
def test_reconstruction_loss_falls(settings: dict) -> None:
    torch.manual_seed(0)
    model = AutoEncoder(**settings)
    x = torch.rand(32, 1, 28, 28).round()  # binary images, so BCE has [0, 1] targets
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = model.training_step((x,), 0)
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[-1] < 0.9 * losses[0]


def test_fit_logs_mse_and_writes_the_grid(tmp_path: Path) -> None:
    write_mnist_idx(tmp_path / "data", n_train=200, n_test=40)
    pl.seed_everything(0)
    dm = MNISTDataModule(data_dir=str(tmp_path / "data"), normalize=False, batch_size=32)
    model = AutoEncoder(input_shape=dm.input_shape, grid_images=6, lr=3e-3)
    trainer = pl.Trainer(
        max_epochs=3, accelerator="cpu", default_root_dir=tmp_path, enable_progress_bar=False
    )
    trainer.fit(model, dm)
    frame = pd.read_csv(Path(trainer.log_dir) / "metrics.csv")
    mse = frame["val_mse"].dropna().tolist()
    assert len(mse) == 3 and mse[-1] < mse[0]
    assert (Path(trainer.log_dir) / "reconstructions.png").stat().st_size > 1000
    # predict gives each image's code and reconstruction error
    outputs = trainer.predict(model, dm)
    assert outputs[0]["latent"].shape == (32, 32) and outputs[0]["mse"].shape == (32,)


def test_the_autoencoder_takes_every_training_setting_and_refuses_a_task_setting() -> None:
    # issue 26: it declared its own copy of the base's optimiser arguments (without l1_lambda)
    model = AutoEncoder(lr=3e-3, l1_lambda=1e-4, lr_scheduler="cosine")
    assert model.hparams.l1_lambda == 1e-4 and model.hparams.lr_scheduler == "cosine"
    assert model.task.name == "reconstruction"
    with pytest.raises(ValueError, match=r"always reconstruction: threshold=0\.3 does not apply"):
        AutoEncoder(threshold=0.3)
    with pytest.raises(ValueError, match="task='multiclass'"):
        AutoEncoder(task="multiclass")
