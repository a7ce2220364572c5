"""The front door: list/create by name, and conventions every registered model must keep."""

from __future__ import annotations

import atexit
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader

import dlzoo
from dlzoo.models.base import call_with
from dlzoo.registry import MODELS, register_model
from helpers.tiny_encoder import write_tiny_encoder

#: a tiny random BERT and its WordPiece tokenizer, as a pretrained encoder's folder (removed
#: when the test process ends)
_FOLDER = tempfile.mkdtemp(prefix="dlzoo-bert-")
atexit.register(shutil.rmtree, _FOLDER, True)
_TINY_BERT = write_tiny_encoder(
    Path(_FOLDER) / "bert",
    ["a tiny corpus of words for a tiny tokenizer", "with more words and some numbers 1 2 3"],
    vocab_size=100,
)

# What each registered model needs to be built and fed. A new model adds its line here; the
# test below fails until it does, so no model escapes the shape/overfit/checkpoint checks.
MODEL_EXAMPLES = {
    "ffn": (
        {"num_features": 6, "num_classes": 2, "hidden_sizes": [16]},
        lambda n: torch.randn(n, 6),
    ),
    "convnet": (
        {"input_shape": [1, 28, 28], "num_classes": 10, "channels": [8, 16], "dropout": 0.0},
        lambda n: torch.randn(n, 1, 28, 28),
    ),
    "autoencoder": (
        {"input_shape": [1, 28, 28], "hidden_sizes": [64], "latent_dim": 16},
        lambda n: torch.rand(n, 1, 28, 28),
    ),
    "rnn": (
        {"vocab_size": 40, "embedding_dim": 16, "hidden_size": 32},
        lambda n: (torch.randint(2, 40, (n, 6)), torch.full((n,), 6)),
    ),
    "improved_rnn": (
        {"vocab_size": 40, "embedding_dim": 16, "hidden_size": 16, "dropout": 0.0},
        lambda n: (torch.randint(2, 40, (n, 7)), torch.full((n,), 7)),
    ),
    "transformer": (
        {"vocab_size": 40, "embedding_dim": 16, "num_heads": 2, "dropout": 0.0},
        lambda n: (torch.randint(2, 40, (n, 7)), torch.full((n,), 7)),
    ),
    "finetune": (
        {"backbone": "resnet18", "weights": None, "num_classes": 3, "head_dropout": 0.0},
        lambda n: torch.randn(n, 3, 32, 32),
    ),
    "tabm": (  # 3 numeric columns (their training quantiles) and 3 one-hot ones
        {
            "num_features": 6,
            "numeric_quantiles": [sorted(torch.randn(257).tolist()) for _ in range(3)],
            "k": 4,
            "d_block": 32,
            "dropout": 0.0,
        },
        lambda n: torch.randn(n, 6),
    ),
    "text_encoder": (
        {"backbone": str(_TINY_BERT), "head_dropout": 0.0, "lr_scheduler": "none"},
        lambda n: (torch.randint(5, 60, (n, 7)), torch.full((n,), 7)),
    ),
}


def test_names_round_trip() -> None:
    assert "ffn" in dlzoo.list_models()
    assert {"tabular", "bank_marketing"} <= set(dlzoo.list_datamodules())
    model = dlzoo.create_model("ffn", num_features=5)
    assert isinstance(model, dlzoo.models.FeedForwardNet)
    assert model.hparams.num_features == 5
    dm = dlzoo.create_datamodule("bank_marketing", batch_size=64)
    assert isinstance(dm, dlzoo.data.BankMarketingDataModule)
    assert dlzoo.get_model_class("ffn") is dlzoo.models.FeedForwardNet


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(KeyError, match=r"unknown model 'resnet9000'.*ffn"):
        dlzoo.create_model("resnet9000")
    with pytest.raises(KeyError, match=r"unknown datamodule 'nope'.*bank_marketing"):
        dlzoo.create_datamodule("nope")


def test_register_refuses_bad_and_duplicate_names() -> None:
    with pytest.raises(ValueError, match="lower snake case"):
        register_model("MyNet")
    with pytest.raises(ValueError, match="already registered"):
        register_model("ffn")(type("Other", (pl.LightningModule,), {}))


def test_every_model_has_an_example() -> None:
    assert set(MODELS) == set(MODEL_EXAMPLES)


@pytest.mark.parametrize("name", sorted(MODEL_EXAMPLES))
def test_forward_shape(name: str) -> None:
    kwargs, make_input = MODEL_EXAMPLES[name]
    model = dlzoo.create_model(name, **kwargs).eval()
    x = make_input(4)
    out = call_with(model, x)
    if model.task.target_is_input:  # an autoencoder reconstructs its input
        assert out.shape == x.shape
    elif model.ensemble:  # TabM: one row of logits per member
        assert out.shape == (4, model.hparams.k, model.num_outputs)
    else:  # text models take (tokens, lengths)
        assert out.shape == (4, model.num_outputs)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(MODEL_EXAMPLES))
@pytest.mark.slow  # a sweep over every family/recipe, or dlzoo in a subprocess
def test_overfits_one_batch(name: str) -> None:
    torch.manual_seed(0)
    kwargs, make_input = MODEL_EXAMPLES[name]
    model = dlzoo.create_model(name, **kwargs)
    x = make_input(16)
    y = torch.arange(16) % kwargs.get("num_classes", 2)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    first = None
    for _ in range(150):
        loss = model.training_step((x, y), 0)
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if model.task.target_is_input:  # reconstruction error of 16 random images, a 16-d code
        assert loss.item() < 0.5 * first
    else:
        assert loss.item() < 0.05 < first


@pytest.mark.parametrize("name", sorted(MODEL_EXAMPLES))
def test_checkpoint_round_trip(name: str, tmp_path) -> None:
    kwargs, make_input = MODEL_EXAMPLES[name]
    model = dlzoo.create_model(name, **kwargs).eval()
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, accelerator="cpu")
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    restored = type(model).load_from_checkpoint(tmp_path / "m.ckpt", weights_only=True).eval()
    x = make_input(5)
    assert dict(restored.hparams) == dict(model.hparams)
    torch.testing.assert_close(call_with(restored, x), call_with(model, x), rtol=0, atol=0)


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
@pytest.mark.parametrize("name", sorted(MODEL_EXAMPLES))
def test_trains_under_mixed_precision(name: str, precision: str) -> None:
    # on CPU, Lightning runs 16-mixed as bf16-mixed; recurrent layers must still train (oneDNN
    # has no reduced-precision LSTM kernels: they run in float32 inside autocast)
    torch.manual_seed(0)
    kwargs, make_input = MODEL_EXAMPLES[name]
    model = dlzoo.create_model(name, **kwargs)
    batches = [(make_input(8), torch.arange(8) % kwargs.get("num_classes", 2)) for _ in range(3)]
    trainer = pl.Trainer(
        accelerator="cpu",
        precision=precision,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, train_dataloaders=DataLoader(batches, batch_size=None))
    assert trainer.global_step == 3
    assert torch.isfinite(trainer.callback_metrics["train_loss"])


def test_the_books_name_for_the_fine_tuner_is_an_alias() -> None:
    assert dlzoo.get_model_class("vgg16_finetune") is dlzoo.get_model_class("finetune")
    assert "vgg16_finetune" not in dlzoo.list_models()  # one entry per family in loops


@pytest.mark.slow  # a sweep over every family/recipe, or dlzoo in a subprocess
def test_import_dlzoo_is_light_and_still_lists_every_name() -> None:
    # a served bundle imports dlzoo: Lightning loads only when a model or DataModule is needed
    code = (
        "import sys, json, dlzoo\n"
        "light = 'lightning' not in sys.modules and 'torchmetrics' not in sys.modules\n"
        "print(json.dumps([light, dlzoo.list_models(), dlzoo.list_datamodules()]))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    light, models, datamodules = json.loads(run.stdout.splitlines()[-1])
    assert light
    assert models == dlzoo.list_models() and "ffn" in models
    assert datamodules == dlzoo.list_datamodules() and "bank_marketing" in datamodules
    assert dlzoo.data.TabularDataModule is dlzoo.get_datamodule_class("tabular")


@pytest.mark.parametrize("name", sorted(MODEL_EXAMPLES))
def test_a_models_copy_of_its_network_arguments_keeps_their_types_and_defaults(name: str) -> None:
    # a registered model repeats its network's arguments (typed and documented, so that the
    # command and IDEs show them); this holds the two declarations to each other
    import inspect

    kwargs, _ = MODEL_EXAMPLES[name]
    model = dlzoo.create_model(name, **kwargs)
    own = inspect.signature(type(model)).parameters
    network = inspect.signature(type(model.network)).parameters
    shared = sorted(set(own) & set(network))
    assert shared, f"{name} takes none of {type(model.network).__name__}'s arguments"
    for arg in shared:
        mine, theirs = own[arg], network[arg]
        assert mine.annotation == theirs.annotation, f"{name}.{arg}: {mine} vs {theirs}"
        if theirs.default is not inspect.Parameter.empty:
            assert mine.default == theirs.default, f"{name}.{arg}: {mine} vs {theirs}"
