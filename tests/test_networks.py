"""Networks are plain ``nn.Module``s (issue 26): each family's builds and runs without
Lightning, trains in a plain PyTorch loop, and a user's own ``nn.Module`` trains through the
command (``TaskModule(network=...)``, no subclass) and exports and serves the same answers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import last_metrics, make_frame, run_dirs
from dlzoo.cli import main
from dlzoo.data import TabularDataModule
from dlzoo.deploy.serve import PredictionAPI, _Raw
from dlzoo.models import FeedForwardNet, TaskModule
from dlzoo.networks import FeedForwardNetwork
from dlzoo.registry import MODELS

# every family's network, built as a user would, and one input batch for it
BUILD_AND_RUN = """
import sys, torch
sys.modules["lightning"] = None  # importing Lightning anywhere below fails
sys.modules["lightning.pytorch"] = None
from dlzoo.networks import (AutoEncoderNetwork, ConvNetwork, FeedForwardNetwork,
    ImprovedRNNNetwork, RNNNetwork, TransformerNetwork)
from dlzoo.networks.finetune import FineTuneNetwork
tokens = torch.randint(2, 30, (4, 7))
cases = [
    (FeedForwardNetwork(5, 3, hidden_sizes=(8,)), (torch.randn(4, 5),), (4, 3)),
    (ConvNetwork((1, 8, 8), 2, channels=(4,), head_sizes=(6,)), (torch.randn(4, 1, 8, 8),), (4, 2)),
    (RNNNetwork(30, 1, embedding_dim=6, hidden_size=5), (tokens,), (4, 1)),
    (ImprovedRNNNetwork(30, 4, embedding_dim=6, hidden_size=5), (tokens, torch.tensor([7, 3, 1, 5])), (4, 4)),
    (TransformerNetwork(30, 2, embedding_dim=8, num_heads=2, feedforward_dim=8), (tokens,), (4, 2)),
    (AutoEncoderNetwork((1, 4, 4), hidden_sizes=(6,), latent_dim=3), (torch.rand(4, 1, 4, 4),), (4, 1, 4, 4)),
    (FineTuneNetwork(3, backbone="resnet18", weights=None), (torch.randn(2, 3, 32, 32),), (2, 3)),
]
for network, inputs, shape in cases:
    bases = type(network).__mro__
    assert torch.nn.Module in bases and not any("lightning" in c.__module__ for c in bases), bases
    out = network.eval()(*inputs)
    assert tuple(out.shape) == shape, (type(network).__name__, tuple(out.shape))
print("ok", len(cases), "lightning" in sys.modules and sys.modules["lightning"] is not None)
"""


@pytest.mark.slow  # a sweep over every family/recipe, or dlzoo in a subprocess
def test_every_family_network_builds_and_runs_without_lightning() -> None:
    done = subprocess.run(
        [sys.executable, "-c", BUILD_AND_RUN], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["ok", "7", "False"]


def test_a_network_trains_in_a_plain_pytorch_loop() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    y = (x[:, 0] + x[:, 1] > 0).long()
    network = FeedForwardNetwork(4, 2, hidden_sizes=(16,))
    optimizer = torch.optim.Adam(network.parameters(), lr=0.05)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(network(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_a_registered_model_holds_its_family_network_and_loads_old_weight_names() -> None:
    model = FeedForwardNet(num_features=4, hidden_sizes=(8,))
    assert isinstance(model.network, FeedForwardNetwork)
    # a checkpoint written before networks were modules of their own: `net.0.weight`
    old = {k.removeprefix("network."): v + 1 for k, v in model.state_dict().items()}
    assert "net.0.weight" in old
    model.load_state_dict(old)
    torch.testing.assert_close(model.network.net[0].weight, old["net.0.weight"])


def test_task_module_trains_any_network_given_to_it(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))
    model = TaskModule(network, task="multilabel", num_classes=4)
    assert model.network is network and "network" not in model.hparams
    x = torch.randn(6, 3)
    out = model.predict_outputs(x)
    assert out["probs"].shape == (6, 4) and set(out) == {"probs", "preds"}
    with pytest.raises(NotImplementedError, match=r"pass TaskModule\(network=\.\.\.\)"):
        TaskModule(task="binary")(x)
    # a registered model builds its own: a network given to it was silently replaced
    with pytest.raises(TypeError, match="network"):
        FeedForwardNet(num_features=3, network=network)

    class Wide(TaskModule):  # a user's registered model that forwards every argument
        def __init__(self, num_features: int = 3, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.network = torch.nn.Linear(num_features, self.num_outputs)

    monkeypatch.setitem(MODELS, "test_wide", Wide)
    with pytest.raises(ValueError, match=r"Wide builds its network from its own arguments"):
        Wide(network=network)


MY_NETWORK = """
import torch
from torch import nn


class Wide(nn.Module):
    '''A plain network: no dlzoo, no Lightning.'''

    def __init__(self, num_features: int, num_outputs: int, width: int = 32) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(num_features, width), nn.ReLU(), nn.Linear(width, num_outputs)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
"""


def test_your_own_nn_module_fits_exports_and_serves_through_the_command(
    csv_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "my_nets.py").write_text(MY_NETWORK)
    monkeypatch.syspath_prepend(str(tmp_path))
    width = TabularDataModule(filename=str(csv_file), target="target").num_features
    config = {
        "seed_everything": 7,
        "model": {
            "class_path": "dlzoo.models.TaskModule",
            "init_args": {
                "network": {
                    "class_path": "my_nets.Wide",
                    "init_args": {"num_features": width, "num_outputs": 1, "width": 16},
                },
                "lr": 0.01,
            },
        },
        "data": {
            "class_path": "tabular",
            "init_args": {"filename": str(csv_file), "target": "target", "batch_size": 32},
        },
        "trainer": {"max_epochs": 3, "enable_progress_bar": False},
    }
    (tmp_path / "my.yaml").write_text(yaml.safe_dump(config))
    main(
        [
            "fit",
            "--config",
            str(tmp_path / "my.yaml"),
            "--trainer.default_root_dir=" + str(tmp_path / "runs"),
        ]
    )
    (run,) = run_dirs(tmp_path / "runs")
    assert last_metrics(run)["val_auroc"] > 0.8  # the task's loss and metrics, from TaskModule
    saved = yaml.safe_load((run / "config.yaml").read_text())["model"]["init_args"]["network"]
    assert saved["class_path"] == "my_nets.Wide"
    run_config, ckpt = str(run / "config.yaml"), str(run / "checkpoints" / "last.ckpt")
    main(["export", "--config", run_config, "--ckpt_path", ckpt, "--output", str(tmp_path / "b")])
    bundle = json.loads((tmp_path / "b" / "dlzoo-bundle.json").read_text())
    assert bundle["task"] == "binary" and bundle["parity"]["max_abs_diff"] <= 1e-5
    rows = make_frame(n=5, seed=3).drop(columns="target")
    rows.to_csv(tmp_path / "new.csv", index=False)
    predict = ["predict", "--config", run_config, "--ckpt_path", ckpt]
    predict += ["--data.init_args.predict_file", str(tmp_path / "new.csv")]
    main([*predict, "--prediction_writer.output", str(tmp_path / "p.csv")])
    predicted = pd.read_csv(tmp_path / "p.csv")
    (served,) = PredictionAPI.for_bundle(tmp_path / "b", threads=1).predict(
        [_Raw(rows.to_dict("records"))]
    )
    assert [r["label"] for r in served] == predicted["label"].tolist()
    np.testing.assert_allclose(
        [r["probabilities"]["yes"] for r in served], predicted["prob_yes"], atol=1e-5
    )


def test_the_exported_graph_holds_no_lightning_module() -> None:
    from dlzoo.deploy.export import InferenceNetwork

    network = InferenceNetwork(FeedForwardNet(num_features=3, hidden_sizes=(4,)))
    assert not any(isinstance(m, pl.LightningModule) for m in network.modules())
    assert tuple(network(torch.randn(2, 3)).shape) == (2, 2)
