"""ConvNet: any input size, the book's presets, and a fit on tiny MNIST files."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from conftest import write_mnist_idx
from dlzoo.data import MNISTDataModule
from dlzoo.models import ConvNet
from dlzoo.models.convnet import PRESETS


@pytest.mark.parametrize(
    ("shape", "num_classes", "outputs"), [((1, 28, 28), 10, 10), ((3, 224, 224), 2, 1)]
)
def test_shapes_at_28_and_224(shape: tuple, num_classes: int, outputs: int) -> None:
    model = ConvNet(input_shape=shape, num_classes=num_classes, channels=(8, 16, 16)).eval()
    assert model(torch.randn(2, *shape)).shape == (2, outputs)
    # the flatten width follows the input size: 16 channels after 3 halvings
    side = shape[1] // 8
    assert model.network.head[1].in_features == 16 * side * side


def test_presets_are_the_book_networks() -> None:
    mnist = ConvNet.from_preset("mnist")
    assert mnist(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    assert [m.out_channels for m in mnist.network.features if isinstance(m, torch.nn.Conv2d)] == [
        32,
        64,
    ]
    cats = ConvNet.from_preset("cats_dogs", input_shape=(3, 150, 150))
    assert cats(torch.randn(2, 3, 150, 150)).shape == (2, 1)
    assert len([m for m in cats.network.features if isinstance(m, torch.nn.Conv2d)]) == 4
    with pytest.raises(ValueError, match="unknown ConvNet preset 'imagenet'"):
        ConvNet.from_preset("imagenet")
    assert set(PRESETS) == {"mnist", "cats_dogs"}


def test_bad_shapes_are_explained() -> None:
    with pytest.raises(ValueError, match="too small for 4 conv units"):
        ConvNet(input_shape=(1, 8, 8), channels=(4, 4, 4, 4))
    with pytest.raises(ValueError, match=r"\(channels, height, width\)"):
        ConvNet(input_shape=(28, 28))


def test_global_pool_takes_any_size_and_channels_last_matches() -> None:
    torch.manual_seed(0)
    model = ConvNet(input_shape=(3, 32, 32), channels=(8, 16), global_pool=True).eval()
    for side in (32, 48, 61):
        assert model(torch.randn(2, 3, side, side)).shape == (2, 10)
    torch.manual_seed(0)
    nhwc = ConvNet(input_shape=(3, 32, 32), channels=(8, 16), global_pool=True, channels_last=True)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(nhwc.eval()(x), model(x), rtol=1e-4, atol=1e-5)


def test_fit_on_mnist_files_learns_and_reloads(tmp_path: Path) -> None:
    write_mnist_idx(tmp_path / "data", n_train=300, n_test=60)
    pl.seed_everything(0)
    dm = MNISTDataModule(data_dir=str(tmp_path / "data"), validation="test", batch_size=32)
    model = ConvNet(input_shape=dm.input_shape, channels=(8, 16), head_sizes=(32,), lr=3e-3)
    trainer = pl.Trainer(
        max_epochs=3,
        accelerator="cpu",
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, dm)
    assert trainer.callback_metrics["val_acc"] > 0.9
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    restored = ConvNet.load_from_checkpoint(path, weights_only=True).eval()
    batch = dm.on_after_batch_transfer(next(iter(dm.val_dataloader())), 0)
    torch.testing.assert_close(restored(batch[0]), model.eval()(batch[0]), rtol=0, atol=0)
