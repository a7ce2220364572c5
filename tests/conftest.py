"""Fixtures that build tiny real data: small CSVs with a learnable target, and CLI configs."""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest-xdist runs one worker per core: one compute thread each (and in the subprocesses they
    # start), or the workers' thread pools fight over the cores (a tiny RNN test: 49 s, not 2 s)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
HELPERS = Path(__file__).parent / "helpers"
#: what a fit writes into its run directory
RUN_FILES = {
    "metrics.csv",
    "config.yaml",
    "hparams.yaml",
    "roc.png",
    "loss.png",
    "confusion_matrix.png",
}


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
    path = os.pathsep.join(p for p in (str(HELPERS), os.environ.get("PYTHONPATH")) if p)
    full_env = {**os.environ, "PYTHONPATH": path, **(env or {})}
    result = subprocess.run(
        command, capture_output=True, text=True, env=full_env, timeout=timeout, cwd=cwd
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} exited {result.returncode}\n{result.stdout[-3000:]}\n"
            f"{result.stderr[-5000:]}"
        )
    return result


def run_dirs(root: Path, kind: str = "lightning_logs") -> list[Path]:
    """Training runs (``lightning_logs``), or ``validate`` / ``test`` runs, under ``root``."""
    return sorted((root / kind).glob("version_*"), key=lambda p: int(p.name.split("_")[1]))


def last_metrics(run: Path) -> dict[str, float]:
    """The last logged value of every column of a run's metrics.csv."""
    frame = pd.read_csv(run / "metrics.csv")
    return {c: frame[c].dropna().iloc[-1] for c in frame.columns if frame[c].notna().any()}


def digit_images(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """28x28 uint8 "digits": a bright 6x6 block whose position is the label, plus noise."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 40, size=(len(labels), 28, 28), dtype=np.uint8)
    for image, label in zip(images, labels, strict=True):
        row, col = 2 + 12 * (label // 5), 1 + 5 * (label % 5)
        image[row : row + 6, col : col + 6] = 230
    return images


def write_mnist_idx(root: Path, n_train: int = 200, n_test: int = 50, gz: bool = True) -> Path:
    """The four MNIST IDX files (torchvision layout root/MNIST/raw), with learnable digits."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = digit_images(labels, seed)
        files = {
            f"{prefix}-images-idx3-ubyte": struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes(),
            f"{prefix}-labels-idx1-ubyte": struct.pack(">II", 2049, n) + labels.tobytes(),
        }
        for name, data in files.items():
            if gz:
                with gzip.open(raw / f"{name}.gz", "wb") as f:
                    f.write(data)
            else:
                (raw / name).write_bytes(data)
    return root


def write_digits_csv(path: Path, n: int = 100, label: bool = True) -> Path:
    """A Kaggle digit-recognizer CSV: label (optional) and pixel0 ... pixel783."""
    labels = np.arange(n) % 10
    frame = pd.DataFrame(
        digit_images(labels).reshape(n, -1), columns=[f"pixel{i}" for i in range(784)]
    )
    if label:
        frame.insert(0, "label", labels)
    frame.to_csv(path, index=False)
    return path


def write_jpeg(path: Path, color: tuple[int, int, int], size: tuple[int, int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    pixels = np.clip(rng.normal(color, 25, size=(size[1], size[0], 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, "JPEG", quality=85)


def write_image_tree(
    root: Path, splits: dict[str, int] | None = None, classes: tuple[str, ...] = ("cats", "dogs")
) -> Path:
    """root/<split>/<class>/<class>.<i>.jpg, each class its own colour, sizes varying."""
    colors = [(200, 60, 50), (50, 80, 200), (60, 190, 70)]
    for s, (split, count) in enumerate((splits or {"train": 8, "validation": 4}).items()):
        for c, name in enumerate(classes):
            for i in range(count):
                size = (40 + 3 * i, 36 + 2 * (i % 3))
                write_jpeg(root / split / name / f"{name}.{i}.jpg", colors[c], size, 100 * s + i)
    return root


POSITIVE = ["great", "wonderful", "loved", "brilliant", "moving"]
NEGATIVE = ["awful", "boring", "hated", "dull", "mess"]
FILLER = ["the", "film", "plot", "actor", "was", "and", "a", "scene", "it", "movie"]


def make_reviews(n: int = 200, seed: int = 0) -> pd.DataFrame:
    """Short reviews whose sentiment words decide the label (1 positive), with HTML breaks."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = i % 2
        words = list(rng.choice(FILLER, size=rng.integers(4, 30)))
        for _ in range(rng.integers(1, 3)):
            cue = rng.choice(POSITIVE if label else NEGATIVE)
            words.insert(int(rng.integers(0, len(words) + 1)), str(cue))
        rows.append((" ".join(words[:6]) + "<br /><br />" + " ".join(words[6:]) + ".", label))
    return pd.DataFrame(rows, columns=["text", "label"])


def write_acl_imdb(root: Path, per_class: int = 40) -> Path:
    """root/aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt, as in the Stanford archive."""
    for s, part in enumerate(("train", "test")):
        frame = make_reviews(4 * per_class, seed=10 + s)
        for folder, label in (("pos", 1), ("neg", 0)):
            out = root / "aclImdb" / part / folder
            out.mkdir(parents=True, exist_ok=True)
            texts = frame[frame["label"] == label]["text"].tolist()[:per_class]
            for i, text in enumerate(texts):
                (out / f"{i}_{8 if label else 2}.txt").write_text(text)
    return root


def grid_sweep(tmp_path: Path, lrs: list[float], *extra: str) -> tuple[list[str], Path]:
    """``python -m dlzoo sweep`` over a grid of learning rates of a tiny FFN (3 epochs), and
    the sweep's root folder; ``extra`` are more sweep options (``--storage``, ``--study``)."""
    make_frame(n=240).to_csv(tmp_path / "rows.csv", index=False)
    config = {
        "seed_everything": 3,
        "trainer": {"max_epochs": 3, "accelerator": "cpu", "devices": 1},
        "model": {"class_path": "ffn", "init_args": {"hidden_sizes": [8]}},
        "data": {
            "class_path": "tabular",
            "init_args": {"filename": str(tmp_path / "rows.csv"), "target": "target"},
        },
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    grid = {"sampler": "grid", "pruner": "none", "params": {"model.init_args.lr": lrs}}
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(grid))
    root = tmp_path / "sweep"
    command = [sys.executable, "-m", "dlzoo", "sweep", "--config", str(tmp_path / "run.yaml")]
    return [*command, "--sweep", str(tmp_path / "grid.yaml"), "--root", str(root), *extra], root


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The files of ``slow`` tests first: pytest-xdist (``--dist loadfile``) hands files out in
    this order, so the long ones start at once and the short ones fill the gaps, instead of a
    long file starting last and one worker waiting for it."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)  # stable: order within a file kept
