"""Helpers shared by the benchmark scripts: the device line and BENCHMARKS.md sections."""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from dlzoo.cli import DlzooCLI, make_cli

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "examples" / "configs"


def device_line() -> str:
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{os.cpu_count()} CPU cores ({cpu}), {gpu}; torch {torch.__version__}, "
        f"lightning {pl.__version__}, Python {platform.python_version()}"
    )


def write_section(out: Path, start: str, end: str, section: str) -> None:
    """Replace the text between ``start`` and ``end`` in ``out`` (or append the section)."""
    text = out.read_text() if out.is_file() else "# Benchmarks\n"
    if start in text:
        text = re.sub(f"{re.escape(start)}.*?{re.escape(end)}", lambda _: section, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    out.write_text(text)
    print(f"wrote {out}")


def fit_command(config: str, out: Path, *overrides: str) -> list[str]:
    """``dlzoo fit`` of a recipe on the CPU, as a user runs it (a subprocess), writing to
    ``out`` (emptied first)."""
    shutil.rmtree(out, ignore_errors=True)
    return [
        str(Path(sys.executable).with_name("dlzoo")),
        "fit",
        "--config",
        str(CONFIGS / f"{config}.yaml"),
        "--trainer.default_root_dir",
        str(out),
        "--trainer.accelerator",
        "cpu",
        "--trainer.enable_progress_bar",
        "false",
        *overrides,
    ]


def build(config: str, root: Path, *overrides: str) -> DlzooCLI:
    args = [  # run=False: no subcommand
        "--config",
        str(CONFIGS / f"{config}.yaml"),
        "--trainer.default_root_dir",
        str(root / config),
        "--trainer.accelerator",
        "cpu" if not torch.cuda.is_available() else "auto",
        "--trainer.enable_progress_bar",
        "false",
        *overrides,
    ]
    shutil.rmtree(root / config, ignore_errors=True)
    return make_cli(args, run=False)


def fit(config: str, root: Path, *overrides: str) -> dict:
    cli = build(config, root, *overrides)
    cli.datamodule.setup("fit")  # reading and checking the data is not training time
    n_train = len(cli.datamodule.train_dataloader().dataset)
    start = time.perf_counter()
    cli.trainer.fit(cli.model, cli.datamodule)
    wall = time.perf_counter() - start
    metrics = {k: float(v) for k, v in cli.trainer.callback_metrics.items()}
    epochs = cli.trainer.current_epoch
    print(config, f"{wall:.0f} s", {k: round(v, 4) for k, v in metrics.items()})
    return {
        "name": config,
        "wall": wall,
        "epochs": epochs,
        "train_images": n_train,
        "images_per_s": n_train * epochs / wall,
        **metrics,
    }


def plain_loop_seconds(model: Any, dm: pl.LightningDataModule, epochs: int) -> tuple[float, float]:
    """Wall and CPU seconds per epoch of the book's loop over the DataModule's own batches.

    It does what the Lightning fit does: train, metrics, validate, metrics. Batches go through
    ``dm.on_after_batch_transfer`` as they do in Lightning (MNIST scales there).
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train, val = dm.train_dataloader(), dm.val_dataloader()
    wall, cpu = time.perf_counter(), time.process_time()
    for epoch in range(epochs):
        model.train()
        train.sampler.set_epoch(epoch)
        for batch in train:
            x, y = dm.on_after_batch_transfer(batch, 0)
            logits = model(x)
            loss = model.loss(logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            model.train_metrics.update(model.probabilities(logits.detach()), y)
            model.train_loss.update(loss.detach(), weight=len(y))
        model.train_metrics.compute(), model.train_loss.compute()
        model.train_metrics.reset(), model.train_loss.reset()
        model.eval()
        with torch.no_grad():
            for batch in val:
                x, y = dm.on_after_batch_transfer(batch, 0)
                logits = model(x)
                model.val_metrics.update(model.probabilities(logits), y)
                model.val_loss.update(model.loss(logits, y), weight=len(y))
        model.val_metrics.compute(), model.val_loss.compute()
        model.val_metrics.reset(), model.val_loss.reset()
    return (time.perf_counter() - wall) / epochs, (time.process_time() - cpu) / epochs


def bench_parser(doc: str, name: str) -> argparse.ArgumentParser:
    """The options every benchmark script takes; ``name`` is its folder under ``.bench``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    parser.add_argument("--work-dir", type=Path, default=REPO / ".bench" / name)
    parser.add_argument("--reuse", action="store_true", help="reuse results.json rows")
    return parser


def saved_results(args: argparse.Namespace) -> tuple[dict, Callable]:
    """The results saved in ``--work-dir`` (with ``--reuse``), and ``once(key, fn, *args)``
    that computes a missing row and saves it."""
    args.work_dir.mkdir(parents=True, exist_ok=True)
    saved = args.work_dir / "results.json"
    results: dict = json.loads(saved.read_text()) if args.reuse and saved.is_file() else {}

    def once(key: str, fn: Callable, *a: Any) -> Any:
        return run_once(results, saved, key, fn, *a)

    return results, once


def run_once(results: dict, saved: Path, key: str, fn: Callable, *args: Any) -> Any:
    """``results[key]``, computing it with ``fn(*args)`` and saving ``results`` if it is missing."""
    if key not in results:
        results[key] = fn(*args)
        saved.write_text(json.dumps(results, indent=1))
    return results[key]
