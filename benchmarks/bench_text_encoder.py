"""Pretrained text encoder benchmarks for BENCHMARKS.md (issue 27; run with ``nox -s bench``).

On the IMDB copy in ``../shared/data/imdb`` (the aclImdb tar, extracted once to ``--work-dir``),
the book's 40k/5k/5k split, with the real encoder (all-MiniLM-L6-v2, rebuilt offline by
``../shared/fetch_text_encoder.sh`` into ``--encoder`` when it is not there):

1. ``imdb_minilm_cpu`` (the encoder fine-tuned, one epoch) beside TF-IDF + logistic regression
   on the same training and validation reviews.
2. The frozen encoder with cached features (``freeze_backbone`` + ``cache_features``) on
   ``--frozen-reviews`` training reviews, its head trained for 5 epochs.
3. ``imdb_rating_minilm_cpu`` (stars, regression) beside TF-IDF + ridge on the same reviews.
4. Sequences/s of the exported bundle (ONNX Runtime, ``dlzoo serve``'s predictor) against eager
   torch, on validation reviews, one request of 64 at a time.

Train time is ``trainer.fit`` (validation included), not the start of Python or tokenising.
The results replace the ``bench:text_encoder`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tarfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import REPO, build, device_line, fit, run_once, write_section
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline

START, END = "<!-- bench:text_encoder:start -->", "<!-- bench:text_encoder:end -->"
SERVE_BATCH, SERVE_ROUNDS = 64, 4


def _tfidf(model: object) -> object:
    vectorizer = TfidfVectorizer(
        min_df=2, ngram_range=(1, 2), sublinear_tf=True, max_features=200_000
    )
    return make_pipeline(vectorizer, model)


def _split_texts(cli: object) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """The DataModule's own training and validation reviews (raw text) and their labels."""
    dm = cli.datamodule
    dm.setup("fit")
    texts, _ = dm._read_for_cache()
    train, val = dm._splits["train"].numpy(), dm._splits["val"].numpy()
    labels = dm._labels
    return [texts[i] for i in train], [texts[i] for i in val], labels[train], labels[val]


def baseline(config: str, root: Path, overrides: list[str], regression: bool) -> dict:
    cli = build(config, root / "baseline", *overrides)
    train_x, val_x, train_y, val_y = _split_texts(cli)
    start = time.perf_counter()
    if regression:
        model = _tfidf(Ridge(alpha=1.0)).fit(train_x, train_y.astype(float))
        predicted = np.clip(model.predict(val_x), 1, 10)
        actual = val_y.astype(float)
        score = {"rmse": float(np.sqrt(np.mean((predicted - actual) ** 2)))}
        score["mae"] = float(np.mean(np.abs(predicted - actual)))
    else:
        model = _tfidf(LogisticRegression(C=4.0, max_iter=2000)).fit(train_x, train_y)
        score = {"acc": float((model.predict(val_x) == val_y).mean())}
    return {"wall": time.perf_counter() - start, "train": len(train_x), "val": len(val_x), **score}


def serving(run_root: Path, work: Path, data: list[str]) -> dict:
    """Sequences/s of the ONNX bundle's predictor and of eager torch, on validation reviews."""
    from dlzoo.data import IMDBDataModule
    from dlzoo.deploy.serve import PredictionAPI, _Raw
    from dlzoo.models import TextEncoderClassifier

    (run,) = sorted((run_root / "imdb_minilm_cpu" / "lightning_logs").glob("version_*"))
    ckpt = run / "checkpoints" / "last.ckpt"
    bundle = work / "bundle"
    dlzoo = str(Path(__import__("sys").executable).with_name("dlzoo"))
    command = [dlzoo, "export", "--config", str(run / "config.yaml"), "--ckpt_path", str(ckpt)]
    subprocess.run([*command, "--output", str(bundle), *data], check=True)
    dm = IMDBDataModule.from_checkpoint(ckpt, data_dir=data[1], url=None, cache_dir=data[3])
    dm.setup("fit")
    texts, _ = dm._read_for_cache()
    requests = [
        [texts[i] for i in dm._splits["val"][k * SERVE_BATCH : (k + 1) * SERVE_BATCH].tolist()]
        for k in range(SERVE_ROUNDS)
    ]
    model = TextEncoderClassifier.load_from_checkpoint(ckpt, weights_only=True).eval()
    apis = {
        "onnxruntime": PredictionAPI.for_bundle(bundle, threads=torch.get_num_threads()),
        "torch": PredictionAPI(model, dm),
    }
    speeds = {}
    for name, api in apis.items():
        api.predict([_Raw(requests[0][:4])])  # warm up
        start = time.perf_counter()
        for request in requests:
            api.predict([_Raw(request)])
        speeds[name] = SERVE_BATCH * SERVE_ROUNDS / (time.perf_counter() - start)
    return speeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    parser.add_argument("--encoder", type=Path, default=REPO / ".bench" / "minilm")
    parser.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    parser.add_argument("--work-dir", type=Path, default=REPO / ".bench" / "text_encoder")
    parser.add_argument("--frozen-reviews", type=int, default=4000)
    parser.add_argument("--reuse", action="store_true", help="reuse results.json rows")
    parser.add_argument("--only", nargs="*", help="run only these steps (and write the section)")
    args = parser.parse_args()
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    saved = work / "results.json"
    results: dict = json.loads(saved.read_text()) if args.reuse and saved.is_file() else {}

    def once(key: str, fn, *a):
        if args.only is not None and key not in args.only:
            return results.get(key)
        return run_once(results, saved, key, fn, *a)

    tar = args.shared / "data" / "imdb" / "aclImdb_v1_labelled.tar.gz"
    lines = [START, "## Text: pretrained encoder (issue 27)", "", f"Device: {device_line()}.", ""]
    if not tar.is_file():
        write_section(args.out, START, END, "\n".join([*lines, f"Skipped: no {tar}.", END]))
        return
    if not (args.encoder / "config.json").is_file():
        subprocess.run(
            ["bash", str(args.shared / "fetch_text_encoder.sh"), str(args.encoder)], check=True
        )
    data_dir = work / "imdb"
    if not (data_dir / "aclImdb").is_dir():
        with tarfile.open(tar) as archive:
            archive.extractall(data_dir, filter="data")
    data = [
        "--data.init_args.data_dir",
        str(data_dir),
        "--data.init_args.cache_dir",
        str(work / "cache"),
    ]
    data += ["--data.init_args.url", "null"]
    encoder = ["--model.init_args.backbone", str(args.encoder), *data]
    runs = work / "runs"
    once("imdb_minilm_cpu", fit, "imdb_minilm_cpu", runs, *encoder)
    once("tfidf_logreg", baseline, "imdb_minilm_cpu", runs, encoder, False)
    frozen = [*encoder, "--model.init_args.freeze_backbone", "true"]
    frozen += ["--model.init_args.cache_features", "true", "--model.init_args.lr", "0.002"]
    frozen += ["--model.init_args.lr_scheduler", "cosine", "--trainer.max_epochs", "5"]
    frozen += ["--data.init_args.max_train_reviews", str(args.frozen_reviews)]
    once("frozen_cached", fit, "imdb_minilm_cpu", runs / "frozen", *frozen)
    once("imdb_rating_minilm_cpu", fit, "imdb_rating_minilm_cpu", runs, *encoder)
    once("tfidf_ridge", baseline, "imdb_rating_minilm_cpu", runs, encoder, True)
    once("serving", serving, runs, work, data[:4])
    r = results
    lines += [
        "Commands: `nox -s bench` (`python benchmarks/bench_text_encoder.py --encoder DEST`); each "
        "recipe is `dlzoo fit --config RECIPE --model.init_args.backbone DEST "
        "--data.init_args.data_dir DIR`. Train time is `trainer.fit`: validation and the plots "
        "written at its end included; tokenising (cached after the first run) is not.",
        "",
        "IMDB sentiment, the book split (validation: 5,000 reviews). Goal: >= 91.2 % (the book's "
        "GPU ImprovedRNN) in <= 75 min of training.",
        "",
        "| run | training reviews x subwords | epochs | val accuracy | val AUROC | train time |",
        "|---|---|---|---|---|---|",
    ]
    if r.get("imdb_minilm_cpu"):
        m = r["imdb_minilm_cpu"]
        lines.append(
            f"| `imdb_minilm_cpu` (fine-tuned) | {m['train_images']:,} x 256 (head+tail) | "
            f"{m['epochs']} | {100 * m['val_acc']:.2f} % | {m['val_auroc']:.4f} | "
            f"{m['wall'] / 60:.1f} min |"
        )
    if r.get("frozen_cached"):
        m = r["frozen_cached"]
        lines.append(
            f"| frozen encoder, cached features, head only | {m['train_images']:,} x 256 | "
            f"{m['epochs']} | {100 * m['val_acc']:.2f} % | {m['val_auroc']:.4f} | "
            f"{m['wall'] / 60:.1f} min |"
        )
    if r.get("tfidf_logreg"):
        b = r["tfidf_logreg"]
        lines.append(
            f"| TF-IDF (1-2 grams) + logistic regression, same reviews | {b['train']:,} x all | - | "
            f"{100 * b['acc']:.2f} % | - | {b['wall'] / 60:.1f} min |"
        )
    lines += [
        "",
        "IMDB star ratings (regression, 1-4 and 7-10 stars). Goal: val RMSE <= 1.9 (TF-IDF + "
        "ridge 2.20 on 5,000 reviews in the regression section).",
        "",
        "| run | training reviews | val RMSE | val MAE | train time |",
        "|---|---|---|---|---|",
    ]
    if r.get("imdb_rating_minilm_cpu"):
        m = r["imdb_rating_minilm_cpu"]
        lines.append(
            f"| `imdb_rating_minilm_cpu` | {m['train_images']:,} | {m['val_rmse']:.3f} | "
            f"{m['val_mae']:.3f} | {m['wall'] / 60:.1f} min |"
        )
    if r.get("tfidf_ridge"):
        b = r["tfidf_ridge"]
        lines.append(
            f"| TF-IDF + ridge, same reviews | {b['train']:,} | {b['rmse']:.3f} | {b['mae']:.3f} | "
            f"{b['wall'] / 60:.1f} min |"
        )
    if r.get("serving"):
        s = r["serving"]
        lines += [
            "",
            f"Predicting validation reviews in requests of {SERVE_BATCH} (tokenising included): "
            f"the exported bundle (ONNX Runtime, what `dlzoo serve --bundle` runs) "
            f"**{s['onnxruntime']:.1f} sequences/s**, eager torch {s['torch']:.1f} sequences/s.",
        ]
    lines.append(END)
    write_section(args.out, START, END, "\n".join(lines))


if __name__ == "__main__":
    main()
