"""Fixtures that build tiny real data: small CSVs with a learnable target, and CLI configs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
HELPERS = Path(__file__).parent / "helpers"


def make_frame(n: int = 400, seed: int = 0, classes: int = 2) -> pd.DataFrame:
    """Rows with numeric, yes/no and categorical columns and a target they determine (plus noise)."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.uniform(0, 100, size=n)
    color = rng.choice(["red", "green", "blue"], size=n)
    flag = rng.choice(["yes", "no"], size=n)
    score = 1.5 * x1 + 0.03 * (x2 - 50) + (color == "red") - 0.8 * (flag == "yes")
    score = score + rng.normal(0, 0.4, size=n)
    if classes == 2:
        target = np.where(score > np.median(score), "yes", "no")
    else:
        target = pd.qcut(score, classes, labels=[f"c{i}" for i in range(classes)]).astype(str)
    return pd.DataFrame(
        {"x1": x1.round(4), "x2": x2.round(2), "color": color, "flag": flag, "target": target}
    )


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    path = tmp_path / "train.csv"
    make_frame().to_csv(path, index=False)
    return path


@pytest.fixture
def multiclass_csv(tmp_path: Path) -> Path:
    path = tmp_path / "multi.csv"
    make_frame(n=450, classes=3).to_csv(path, index=False)
    return path


def write_config(
    path: Path, csv: Path, root: Path, max_epochs: int = 3, **model_args: object
) -> Path:
    """A dlzoo YAML config for the FFN on ``csv``, writing runs under ``root``."""
    config = {
        "seed_everything": 7,
        "trainer": {
            "max_epochs": max_epochs,
            "accelerator": "cpu",
            "devices": 1,
            "default_root_dir": str(root),
            "enable_progress_bar": False,
            "enable_model_summary": False,
        },
        "model": {
            "class_path": "dlzoo.models.FeedForwardNet",
            "init_args": {"hidden_sizes": [32, 32], "dropout": 0.1, "lr": 0.01, **model_args},
        },
        "data": {
            "class_path": "dlzoo.data.TabularDataModule",
            "init_args": {"filename": str(csv), "target": "target", "batch_size": 32},
        },
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def config_file(tmp_path: Path, csv_file: Path) -> Path:
    return write_config(tmp_path / "config.yaml", csv_file, tmp_path / "runs")


def run_dlzoo(
    *args: str, env: dict | None = None, check: bool = True, timeout: int = 300, cwd: Path = REPO
):
    """Run the installed ``dlzoo`` console script as a user would."""
    command = [str(Path(sys.executable).with_name("dlzoo")), *args]
    full_env = {**os.environ, "PYTHONPATH": str(HELPERS), **(env or {})}
    result = subprocess.run(
        command, capture_output=True, text=True, env=full_env, timeout=timeout, cwd=cwd
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} exited {result.returncode}\n{result.stdout[-3000:]}\n"
            f"{result.stderr[-5000:]}"
        )
    return result


def run_dirs(root: Path) -> list[Path]:
    return sorted((root / "lightning_logs").glob("version_*"))


def last_metrics(run: Path) -> dict[str, float]:
    """The last logged value of every column of a run's metrics.csv."""
    frame = pd.read_csv(run / "metrics.csv")
    return {c: frame[c].dropna().iloc[-1] for c in frame.columns if frame[c].notna().any()}
