"""Distributed training from the ``dlzoo`` command: 2 CPU processes (DDP, gloo).

Each test starts real processes (Lightning launches the second rank): one file, so that
pytest-xdist can run it beside the rest of the CLI tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pandas as pd
import pytest
import torch

from conftest import (
    HELPERS,
    RUN_FILES,
    last_metrics,
    make_frame,
    make_reviews,
    run_dirs,
    run_dlzoo,
    write_config,
    write_image_tree,
)
from dlzoo.data import TabularDataModule
from dlzoo.models import FeedForwardNet

#: real servers, subprocesses and kills: left out of `nox -s tests_fast`
pytestmark = pytest.mark.slow


def test_ddp_two_cpu_processes(tmp_path: Path) -> None:
    csv = tmp_path / "even.csv"
    make_frame(n=400).to_csv(csv, index=False)  # 80 val rows: no padding by DistributedSampler
    config = write_config(tmp_path / "ddp.yaml", csv, tmp_path / "runs", max_epochs=2)
    run_dlzoo(
        "fit",
        "--config",
        str(config),
        "--trainer.accelerator",
        "cpu",
        "--trainer.devices",
        "2",
        "--trainer.strategy",
        "ddp",
        cwd=tmp_path,
    )
    runs = run_dirs(tmp_path / "runs")
    assert len(runs) == 1, runs  # rank zero alone writes the run directory
    (run,) = runs
    assert {p.name for p in run.iterdir()} >= RUN_FILES
    assert len(list((run / "checkpoints").iterdir())) == 2  # best + last, written once
    assert len(list(tmp_path.rglob("*.ckpt"))) == 2
    frame = pd.read_csv(run / "metrics.csv")
    assert frame["val_auroc"].notna().sum() == 2  # one row per epoch, not per rank
    # logged val metrics cover the whole val split (synchronised), not one rank's half
    model = FeedForwardNet.load_from_checkpoint(run / "checkpoints" / "last.ckpt").eval()
    dm = TabularDataModule(filename=str(csv), target="target", batch_size=32)
    dm.setup("fit")
    x, y = dm._split("val").tensors
    probs = model.predict_proba(x).detach()
    accuracy = ((probs >= 0.5).long() == y).float().mean().item()
    from torchmetrics.functional.classification import binary_auroc

    metrics = last_metrics(run)
    assert metrics["val_acc"] == pytest.approx(accuracy, abs=1e-6)
    assert metrics["val_auroc"] == pytest.approx(binary_auroc(probs, y).item(), abs=1e-5)


def test_ddp_metrics_equal_one_process_for_odd_and_even_splits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # tabular, image folder and text on 2 CPU processes: every validation and test row is scored
    # once (no padding repeats), text batches are sharded, and the logged metrics equal a
    # single-process computation with the same weights over the same splits
    monkeypatch.syspath_prepend(str(HELPERS))
    from setups import SETUPS

    make_frame(n=95).to_csv(tmp_path / "rows.csv", index=False)
    write_image_tree(
        tmp_path / "images", {"train": 6, "validation": 3, "test": 4}, classes=("a", "b", "c")
    )
    make_reviews(115).to_csv(tmp_path / "reviews.csv", index=False)
    make_reviews(20, seed=4).to_csv(tmp_path / "test_reviews.csv", index=False)
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HELPERS), *sys.path])}
    result = subprocess.run(
        [sys.executable, str(HELPERS / "ddp_metrics.py"), str(tmp_path), str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    for kind, build in SETUPS.items():
        logged = json.loads((out / f"{kind}.json").read_text())
        model, datamodule = build(tmp_path)
        model.load_state_dict(torch.load(out / f"{kind}.pt", weights_only=True))
        trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
        single = {}
        for run in (trainer.validate, trainer.test):
            single.update(run(model, datamodule=datamodule, verbose=False)[0])
        names = ("rmse", "mae", "r2") if kind == "regression" else ("acc", "auroc")
        for key in [f"{stage}_{name}" for stage in ("val", "test") for name in ("loss", *names)]:
            assert logged[key] == pytest.approx(single[key], rel=1e-5, abs=1e-5), (kind, key)
