"""Vision benchmarks for BENCHMARKS.md (run with ``nox -s bench``).

On the real copies in ``../shared/data/`` (MNIST IDX files, the Cats-vs-Dogs tar), each extracted
once to ``--work-dir``:

1. MNIST: the book's ConvNet config and dlzoo's improved one, 5 epochs each; the autoencoder.
2. Lightning time per epoch against a plain PyTorch loop over the same MNIST batches.
3. Cats vs Dogs: images/s of the input pipeline alone; the book's ConvNet from scratch.
4. VGG16 fine-tuning: no ImageNet weights here, so a frozen *random* VGG16 shows what feature
   caching does to the time per epoch (its accuracy means nothing and is not reported).

Each model run builds the model and data from the example config through ``DlzooCLI``, as
``dlzoo fit`` does. A dataset missing from ``../shared/data`` is reported and its rows skipped.
The results replace the ``bench:vision`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tarfile
import time
from pathlib import Path

import lightning.pytorch as pl
from _common import build, device_line, fit, plain_loop_seconds, run_once, write_section

from dlzoo.data import MNISTDataModule
from dlzoo.models import ConvNet

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- bench:vision:start -->", "<!-- bench:vision:end -->"


def plain_epoch_seconds(dm: MNISTDataModule, epochs: int) -> float:
    """The book's loop over the same batches and model, with the same metric work."""
    pl.seed_everything(0, verbose=False)
    return plain_loop_seconds(ConvNet(), dm, epochs)[0]


def lightning_epoch_seconds(dm: MNISTDataModule, epochs: int) -> float:
    pl.seed_everything(0, verbose=False)
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    start = time.perf_counter()
    trainer.fit(ConvNet(), datamodule=dm)
    return (time.perf_counter() - start) / epochs


def pipeline_images_per_s(data_dir: Path, workers: int) -> float:
    from dlzoo.data import CatsDogsDataModule

    dm = CatsDogsDataModule(data_dir=str(data_dir), url=None, num_workers=workers, batch_size=32)
    dm.setup("fit")
    loader = dm.train_dataloader()
    start, count = time.perf_counter(), 0
    for images, _ in loader:
        count += len(images)
    return count / (time.perf_counter() - start)


class EpochTimer(pl.Callback):
    """Seconds of each training epoch, its validation included."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.times.append(time.perf_counter() - self.start)


def feature_cache_speedup(data_dir: Path, root: Path, images: int) -> dict:
    """Seconds per epoch of a frozen VGG16 with and without cached features, on a subset."""
    subset = root / "cats_dogs_subset"
    if not subset.is_dir():
        for split, count in (("train", images), ("validation", images // 2)):
            for cls in ("cats", "dogs"):
                files = sorted((data_dir / split / cls).glob("*.jpg"))[: count // 2]
                (subset / split / cls).mkdir(parents=True, exist_ok=True)
                for f in files:
                    shutil.copy(f, subset / split / cls / f.name)
    out = {}
    for cache in (False, True):
        overrides = [
            "--data.init_args.data_dir",
            str(subset),
            "--data.init_args.url",
            "null",
            "--model.init_args.weights",
            "null",
            "--model.init_args.cache_features",
            str(cache).lower(),
            "--trainer.max_epochs",
            "2",
        ]
        cli = build("catsdogs_vgg16", root, *overrides)
        timer = EpochTimer()
        cli.trainer.callbacks.append(timer)
        start = time.perf_counter()
        cli.trainer.fit(cli.model, cli.datamodule)
        out["cached" if cache else "uncached"] = {
            "total": time.perf_counter() - start,
            "epoch": min(timer.times),
        }
        print("vgg16 cache", cache, out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    parser.add_argument("--work-dir", type=Path, default=REPO / ".bench" / "vision")
    parser.add_argument("--catsdogs-epochs", type=int, default=10)
    parser.add_argument("--vgg-images", type=int, default=200)
    parser.add_argument("--reuse", action="store_true", help="reuse results.json rows")
    args = parser.parse_args()
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    saved = work / "results.json"
    results: dict = json.loads(saved.read_text()) if args.reuse and saved.is_file() else {}
    skipped: list[str] = []

    def once(key: str, fn, *a):
        return run_once(results, saved, key, fn, *a)

    mnist_src = args.shared / "mnist" / "MNIST" / "raw"
    if mnist_src.is_dir():
        mnist = work / "mnist"
        if not (mnist / "MNIST" / "raw").is_dir():
            shutil.copytree(mnist_src, mnist / "MNIST" / "raw")
        data = ["--data.init_args.data_dir", str(mnist)]
        for config in ("mnist_convnet", "mnist_convnet_bn", "mnist_autoencoder"):
            once(config, fit, config, work / "runs", *data)
        dm = MNISTDataModule(data_dir=str(mnist), batch_size=64)
        dm.setup("fit")

        def overhead() -> dict:
            runs = {"lightning": [], "plain": []}
            for _ in range(2):
                runs["lightning"].append(lightning_epoch_seconds(dm, 1))
                runs["plain"].append(plain_epoch_seconds(dm, 1))
            return {k: min(v) for k, v in runs.items()}

        once("overhead", overhead)
    else:
        skipped.append(f"MNIST (no {mnist_src})")

    tar = args.shared / "cats_dogs" / "cats_and_dogs.tar"
    if tar.is_file():
        cats = work / "cats_dogs"
        if not (cats / "cats_and_dogs").is_dir():
            with tarfile.open(tar) as archive:
                archive.extractall(cats, filter="data")
        data = ["--data.init_args.data_dir", str(cats), "--data.init_args.url", "null"]
        once("pipeline_0", pipeline_images_per_s, cats, 0)
        once("pipeline_2", pipeline_images_per_s, cats, 2)
        epochs = ["--trainer.max_epochs", str(args.catsdogs_epochs)]
        once("catsdogs_convnet", fit, "catsdogs_convnet", work / "runs", *data, *epochs)
        once(
            "vgg_cache",
            feature_cache_speedup,
            cats / "cats_and_dogs",
            work / "runs",
            args.vgg_images,
        )
    else:
        skipped.append(f"Cats vs Dogs (no {tar})")

    lines = [START, "## Vision (issue 3)", "", f"Device: {device_line()}.", ""]
    lines += ["Command: `nox -s bench` (`python benchmarks/bench_vision.py`)."]
    if skipped:
        lines += ["", "Skipped, data not in ../shared/data: " + "; ".join(skipped) + "."]
    lines += [
        "",
        "| run | data | epochs | val accuracy | other | train time | train images/s |",
        "|---|---|---|---|---|---|---|",
    ]
    book = {"mnist_convnet": "book 98.5 %", "catsdogs_convnet": "book 85.4 % (20k/5k images)"}
    for key in ("mnist_convnet", "mnist_convnet_bn", "mnist_autoencoder", "catsdogs_convnet"):
        if key not in results:
            continue
        r = results[key]
        data = (
            "MNIST 48,000 / 12,000"
            if key.startswith("mnist")
            else f"Cats vs Dogs {r['train_images']:,} / 500"
        )
        acc = f"{100 * r['val_acc']:.2f} %" if "val_acc" in r else "-"
        other = book.get(key, "")
        if "val_mse" in r:
            other = f"val MSE {r['val_mse']:.4f} (pixels in [0, 1])"
        elif "val_auroc" in r:
            other = (other + "; " if other else "") + f"val AUROC {r['val_auroc']:.4f}"
        lines.append(
            f"| `{key}` | {data} | {r['epochs']} | {acc} | {other} | {r['wall']:.0f} s | "
            f"{r['images_per_s']:.0f} |"
        )
    if "overhead" in results:
        o = results["overhead"]
        lines += [
            "",
            "Lightning against a plain PyTorch loop, MNIST ConvNet, batch 64, one epoch of "
            "train + validation with the same metric work, best of 2 interleaved runs: "
            f"Lightning {o['lightning']:.1f} s, plain {o['plain']:.1f} s, ratio "
            f"{o['lightning'] / o['plain']:.3f} (target <= 1.05).",
        ]
    if "pipeline_0" in results:
        lines += [
            "",
            "Cats-vs-Dogs input pipeline alone (decode JPEG, Resize 255, CenterCrop 224, "
            "normalise; 2,000 train images, batch 32): "
            f"{results['pipeline_0']:.0f} images/s in the main process, "
            f"{results['pipeline_2']:.0f} images/s with 2 workers.",
        ]
    if "vgg_cache" in results:
        v = results["vgg_cache"]
        lines += [
            "",
            f"VGG16 feature caching ({args.vgg_images} train / {args.vgg_images // 2} val "
            "images, frozen backbone with random weights, 2 epochs): seconds per epoch "
            f"{v['uncached']['epoch']:.1f} without the cache, {v['cached']['epoch']:.3f} with it "
            f"({v['uncached']['epoch'] / v['cached']['epoch']:.0f}x); whole fit "
            f"{v['uncached']['total']:.0f} s vs {v['cached']['total']:.0f} s (the cached run "
            "pays one backbone pass up front).",
        ]
    lines.append(END)
    write_section(args.out, START, END, "\n".join(lines))


if __name__ == "__main__":
    main()
