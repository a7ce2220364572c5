"""Training across machines, tested on this one (issue 29): ``torchrun --nnodes 2
--nproc_per_node 1`` starts two node processes on loopback (static rendezvous, gloo), as the
README tells users to on two machines. The run they make is the run two processes of one node
make (same validation metrics, same checkpoint), and its logged metrics are those of one process
scoring the whole validation split with its weights."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from torchmetrics.functional.classification import binary_auroc

from conftest import last_metrics, make_frame, run_dirs, run_dlzoo, write_config
from dlzoo.data import TabularDataModule
from dlzoo.models import FeedForwardNet

#: real servers, subprocesses and kills: left out of `nox -s tests_fast`
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_nodes_by_torchrun_train_as_two_processes_of_one_node(tmp_path: Path) -> None:
    csv = tmp_path / "rows.csv"
    make_frame(n=400).to_csv(csv, index=False)
    config = write_config(tmp_path / "run.yaml", csv, tmp_path / "nodes", max_epochs=2)
    ddp = ["--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.strategy", "ddp"]
    port = _free_port()
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2"]
    command += ["--nproc_per_node", "1", "--master_addr", "127.0.0.1", "--master_port", str(port)]
    fit = ["-m", "dlzoo", "fit", "--config", str(config), *ddp, "--trainer.num_nodes", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    nodes = [
        subprocess.Popen(
            [*command, "--node_rank", str(rank), *fit],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        for rank in (0, 1)
    ]
    for node in nodes:
        out, _ = node.communicate(timeout=300)
        assert node.returncode == 0, out[-4000:]
    (run,) = run_dirs(tmp_path / "nodes")  # global rank zero alone writes the run
    one_node = ["--trainer.devices", "2", "--trainer.default_root_dir", str(tmp_path / "one")]
    run_dlzoo("fit", "--config", str(config), *ddp[:2], *ddp[4:], *one_node, cwd=tmp_path)
    (single_node,) = run_dirs(tmp_path / "one")

    nodes_metrics = pd.read_csv(run / "metrics.csv")
    one_metrics = pd.read_csv(single_node / "metrics.csv")
    columns = ["epoch", "val_loss", "val_acc", "val_auroc", "train_loss"]
    pd.testing.assert_frame_equal(
        nodes_metrics[columns].dropna().reset_index(drop=True),
        one_metrics[columns].dropna().reset_index(drop=True),
        atol=1e-6,
        rtol=0,
    )
    weights = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    same = torch.load(single_node / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert weights.keys() == same.keys()
    for key in weights:
        torch.testing.assert_close(weights[key], same[key], atol=1e-6, rtol=0)

    # what was logged is the whole validation split scored by one process
    model = FeedForwardNet.load_from_checkpoint(run / "checkpoints" / "last.ckpt").eval()
    dm = TabularDataModule(filename=str(csv), target="target", batch_size=32)
    dm.setup("fit")
    x, y = dm._split("val").tensors
    probs = model.predict_proba(x).detach()
    metrics = last_metrics(run)
    assert metrics["val_acc"] == pytest.approx(((probs >= 0.5).long() == y).float().mean().item())
    assert metrics["val_auroc"] == pytest.approx(binary_auroc(probs, y).item(), abs=1e-5)
