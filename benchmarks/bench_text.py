"""Text benchmarks for BENCHMARKS.md (run with ``nox -s bench``).

On the IMDB copy in ``../shared/data/imdb`` (the official aclImdb tar, extracted once to
``--work-dir``), with the book's 40k/5k/5k seeded re-split of the 50,000 labelled reviews:

1. Tokenise + numericalise throughput of the whole corpus: cold (an empty cache, both cores) and
   warm (the cached corpus), for the spaCy and the simple tokenizer.
2. The vanilla RNN (the book's settings on 12,000 training reviews, 2 epochs), ImprovedRNN and
   Transformer on the CPU-sized configs, with wall time.

No pretrained word vectors are available here, so every embedding starts random.
The results replace the ``bench:text`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tarfile
import time
from pathlib import Path

from _common import device_line, fit, run_once, write_section

from dlzoo.data import IMDBDataModule

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- bench:text:start -->", "<!-- bench:text:end -->"
CPU_DATA = [  # the vanilla RNN as the book ran it (whole reviews, padded), on fewer of them
    "--data.init_args.max_train_reviews",
    "12000",
    "--trainer.max_epochs",
    "2",
]


def tokenise(data_dir: Path, cache: Path, tokenizer: str) -> dict:
    shutil.rmtree(cache, ignore_errors=True)
    start = time.perf_counter()
    dm = IMDBDataModule(data_dir=str(data_dir), cache_dir=str(cache), tokenizer=tokenizer)
    dm.setup("fit")
    cold = time.perf_counter() - start
    start = time.perf_counter()
    again = IMDBDataModule(data_dir=str(data_dir), cache_dir=str(cache), tokenizer=tokenizer)
    again.setup("fit")
    warm = time.perf_counter() - start
    tokens = int(dm._corpus.lengths.sum())
    print(tokenizer, f"cold {cold:.1f} s, warm {warm:.2f} s, {tokens:,} tokens")
    return {"cold": cold, "warm": warm, "tokens": tokens, "vocab": dm.vocab_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    parser.add_argument("--work-dir", type=Path, default=REPO / ".bench" / "text")
    parser.add_argument("--reuse", action="store_true", help="reuse results.json rows")
    args = parser.parse_args()
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    saved = work / "results.json"
    results: dict = json.loads(saved.read_text()) if args.reuse and saved.is_file() else {}

    def once(key: str, fn, *a):
        return run_once(results, saved, key, fn, *a)

    lines = [START, "## Text (issue 4)", "", f"Device: {device_line()}.", ""]
    lines += ["Command: `nox -s bench` (`python benchmarks/bench_text.py`)."]
    tar = args.shared / "imdb" / "aclImdb_v1_labelled.tar.gz"
    if not tar.is_file():
        lines += ["", f"Skipped: no IMDB copy at {tar}.", END]
        write_section(args.out, START, END, "\n".join(lines))
        return
    data = work / "imdb"
    if not (data / "aclImdb").is_dir():
        with tarfile.open(tar) as archive:
            archive.extractall(data, filter="data")
    for tokenizer in ("spacy", "simple"):
        once(f"tokenise_{tokenizer}", tokenise, data, work / f"cache_{tokenizer}", tokenizer)
    cache = ["--data.init_args.cache_dir", str(work / "cache_spacy")]
    common = ["--data.init_args.data_dir", str(data), "--data.init_args.url", "null", *cache]
    once("imdb_rnn", fit, "imdb_rnn", work / "runs", *common, *CPU_DATA)
    for config in ("imdb_improved_rnn_cpu", "imdb_transformer_cpu"):
        once(config, fit, config, work / "runs", *common)

    lines += [
        "",
        "Tokenise + numericalise all 50,000 labelled reviews (build the vocabulary from the 40k "
        "training reviews, index every review), 2 processes:",
        "",
        "| tokenizer | tokens | cold (empty cache) | warm (cached corpus) | target |",
        "|---|---|---|---|---|",
    ]
    for tokenizer in ("spacy", "simple"):
        r = results[f"tokenise_{tokenizer}"]
        lines.append(
            f"| {tokenizer} | {r['tokens']:,} | {r['cold']:.1f} s | {r['warm']:.2f} s | "
            "<= 60 s cold, <= 3 s warm |"
        )
    lines += [
        "",
        "Models (random embeddings: no pretrained vectors here). Train time is `trainer.fit`, "
        "validation epochs included, without the ~12 s of starting Python and Lightning:",
        "",
        "| run | training reviews x tokens | epochs | val accuracy | val AUROC | train time |",
        "|---|---|---|---|---|---|",
    ]
    shapes = {
        "imdb_rnn": "12,000 x all (book: whole reviews)",
        "imdb_improved_rnn_cpu": "40,000 x last 200",
        "imdb_transformer_cpu": "20,000 x last 256",
    }
    for key in ("imdb_rnn", "imdb_improved_rnn_cpu", "imdb_transformer_cpu"):
        r = results[key]
        lines.append(
            f"| `{key}` | {shapes[key]} | {r['epochs']} | {100 * r['val_acc']:.2f} % | "
            f"{r['val_auroc']:.4f} | {r['wall'] / 60:.1f} min |"
        )
    lines.append(END)
    write_section(args.out, START, END, "\n".join(lines))


if __name__ == "__main__":
    main()
