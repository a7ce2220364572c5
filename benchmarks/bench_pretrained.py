"""Pretrained-weights benchmarks for BENCHMARKS.md (run with ``nox -s bench``).

On the real data and pretrained files in ``../shared/data``:

1. Cats vs Dogs (2,000 train / 500 val): torchvision's MobileNetV2 (IMAGENET1K_V1 file) and
   timm's EfficientNet-Lite0 (``tf_efficientnet_lite0`` state dict), each frozen with the head
   trained on cached features, and with gradual unfreezing. The images are prepared as each
   backbone's weights expect (no ``preprocessing`` in the configs).
2. IMDB, the CPU configs of ImprovedRNN and Transformer with the GloVe 6B 50-d vectors (the
   random-embedding rows are those of the text section).

The results replace the ``bench:pretrained`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

from _common import bench_parser, device_line, fit, saved_results, write_section

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- bench:pretrained:start -->", "<!-- bench:pretrained:end -->"
CATS = {
    "catsdogs_mobilenet_v2": "mobilenet_v2-b0353104.pth",
    "catsdogs_mobilenet_v2_unfreeze": "mobilenet_v2-b0353104.pth",
    "catsdogs_efficientnet_lite0": "efficientnet_lite0_timm.pth",
    "catsdogs_efficientnet_lite0_unfreeze": "efficientnet_lite0_timm.pth",
}
TEXT = {  # GloVe config: (random-embedding config, its val accuracy in the text section)
    "imdb_improved_rnn_glove_cpu": ("imdb_improved_rnn_cpu", 0.8814),
    "imdb_transformer_glove_cpu": ("imdb_transformer_cpu", 0.8504),
}


def main() -> None:
    parser = bench_parser(__doc__, "pretrained")
    parser.add_argument("--only", choices=["cats", "text"], help="run one half")
    args = parser.parse_args()
    work = args.work_dir
    results, once = saved_results(args)

    tar = args.shared / "cats_dogs" / "cats_and_dogs.tar"
    if args.only != "text" and tar.is_file():
        cats = REPO / ".bench" / "vision" / "cats_dogs"
        if not (cats / "cats_and_dogs").is_dir():
            with tarfile.open(tar) as archive:
                archive.extractall(cats, filter="data")
        for config, weights in CATS.items():
            data = ["--data.init_args.data_dir", str(cats), "--data.init_args.url", "null"]
            model = ["--model.init_args.weights_file", str(args.shared / "weights" / weights)]
            workers = ["--data.init_args.num_workers", "2"]
            once(config, fit, config, work / "runs", *data, *model, *workers)

    imdb = args.shared / "imdb" / "aclImdb_v1_labelled.tar.gz"
    vectors = args.shared / "vectors" / "glove.6B.50d.txt.gz"
    if args.only != "cats" and imdb.is_file() and vectors.is_file():
        data_dir = REPO / ".bench" / "text" / "imdb"
        if not (data_dir / "aclImdb").is_dir():
            with tarfile.open(imdb) as archive:
                archive.extractall(data_dir, filter="data")
        common = ["--data.init_args.data_dir", str(data_dir), "--data.init_args.url", "null"]
        common += ["--data.init_args.cache_dir", str(REPO / ".bench" / "text" / "cache_spacy")]
        common += ["--data.init_args.vectors", str(vectors)]
        for config in TEXT:
            once(config, fit, config, work / "runs", *common)

    lines = [START, "## Pretrained weights (issue 9)", "", f"Device: {device_line()}.", ""]
    lines += [
        "Command: `nox -s bench` (`python benchmarks/bench_pretrained.py`). Time is "
        "`trainer.fit` (feature caching and validation included), without the ~20 s of "
        "starting Python and Lightning.",
        "",
        "Cats vs Dogs, 2,000 training / 500 validation images. VGG16 weights (the book's) "
        "cannot be had here: torchvision's MobileNetV2 file and timm's EfficientNet-Lite0 "
        "state dict stand in, each preparing images as its weights expect. Goal: >= 98.6 % "
        "(the book's VGG16 on 20,000 images), frozen variant <= 5 min.",
        "",
        "| config | backbone | epochs | val accuracy | val AUROC | fit time | per epoch |",
        "|---|---|---|---|---|---|---|",
    ]
    for config in CATS:
        if config not in results:
            continue
        r = results[config]
        backbone = "MobileNetV2" if "mobilenet" in config else "EfficientNet-Lite0 (timm)"
        how = "gradual unfreeze at epoch 2" if "unfreeze" in config else "frozen, cached features"
        lines.append(
            f"| `{config}` | {backbone}, {how} | {r['epochs']} | {100 * r['val_acc']:.2f} % | "
            f"{r['val_auroc']:.4f} | {r['wall'] / 60:.1f} min | {r['wall'] / r['epochs']:.0f} s |"
        )
    lines += [
        "",
        "IMDB (book split, 40k/5k/5k), the CPU configs with the GloVe 6B 50-d vectors (the "
        "embedding initialised from them and trained; 50-d, so narrower than the random "
        "configs). Goals: ImprovedRNN >= 89.5 %, Transformer >= 87 %, each < 15 min.",
        "",
        "| config | val accuracy | val AUROC | fit time | random embedding (text section) |",
        "|---|---|---|---|---|",
    ]
    for config, (random_config, random_acc) in TEXT.items():
        if config not in results:
            continue
        r = results[config]
        lines.append(
            f"| `{config}` | {100 * r['val_acc']:.2f} % | {r['val_auroc']:.4f} | "
            f"{r['wall'] / 60:.1f} min | `{random_config}`: {100 * random_acc:.2f} % |"
        )
    lines.append(END)
    write_section(args.out, START, END, "\n".join(lines))


if __name__ == "__main__":
    main()
