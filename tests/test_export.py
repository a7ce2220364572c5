"""``dlzoo export``: every model family to ONNX and TorchScript, with parity on raw inputs, and a
bundle that scores raw rows and images outside dlzoo (numpy, the JSON, ONNX Runtime)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import onnxruntime
import pandas as pd
import pytest
import torch
from PIL import Image

from conftest import digit_images, make_frame, make_reviews, write_image_tree
from dlzoo.cli import main
from dlzoo.data import (
    ImageFolderDataModule,
    MNISTDataModule,
    TabularDataModule,
    TextClassificationDataModule,
)
from dlzoo.deploy.export import BUNDLE_FILE, ExportError, export_model
from dlzoo.models import (
    AutoEncoder,
    ConvNet,
    FeedForwardNet,
    FineTuneClassifier,
    ImprovedRNN,
    RNNClassifier,
    TabMNet,
    TextEncoderClassifier,
    TransformerClassifier,
)
from dlzoo.registry import MODELS
from helpers.tiny_encoder import write_tiny_encoder

#: ONNX Runtime's and torch's float32 kernels sum in different orders: ~1e-7 is typical
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Tiny DataModules of each input kind, and raw inputs for each (as a user has them)."""
    root = tmp_path_factory.mktemp("export_data")
    make_frame(n=120).to_csv(root / "rows.csv", index=False)
    tabular = TabularDataModule(filename=str(root / "rows.csv"), target="target")
    rows = make_frame(n=6, seed=3).drop(columns="target").to_dict("records")

    pixels = digit_images(np.arange(40) % 10)
    frame = pd.DataFrame(pixels.reshape(40, -1), columns=[f"pixel{i}" for i in range(784)])
    frame.insert(0, "label", np.arange(40) % 10)
    frame.to_csv(root / "digits.csv", index=False)
    digits = MNISTDataModule(csv_file=str(root / "digits.csv"), normalize=False)
    digit_inputs = digit_images(np.arange(6) % 10, seed=4).reshape(6, -1).tolist()

    reviews = make_reviews(80)
    reviews.to_csv(root / "reviews.csv", index=False)
    text = TextClassificationDataModule(
        train_file=str(root / "reviews.csv"), tokenizer="simple", cache_dir=str(root / "cache")
    )
    texts = make_reviews(6, seed=6)["text"].tolist()
    texts[0] = "great"  # one short text: the two batches have different sequence lengths
    # a tiny random BERT and its own WordPiece tokenizer (what text_encoder reads)
    encoder = write_tiny_encoder(root / "bert", reviews["text"].tolist())
    subword = TextClassificationDataModule(
        train_file=str(root / "reviews.csv"), tokenizer=str(encoder), max_length=48,
        cache_dir=str(root / "cache"),
    )  # fmt: skip

    write_image_tree(root / "images", {"train": 4, "validation": 2})
    images = ImageFolderDataModule(
        data_dir=str(root / "images"),
        val_dir="validation",
        image_size=32,
        resize_size=36,
        num_workers=0,
    )
    files = sorted((root / "images" / "validation").rglob("*.jpg"))
    image_inputs = [p.read_bytes() for p in files] + [files[0].read_bytes()]
    return {
        "tabular": (tabular, rows),
        "digits": (digits, digit_inputs),
        "text": (text, texts),
        "subword": (subword, texts),
        "encoder": encoder,
        "image": (images, image_inputs),
    }


def _family(name: str, data: dict):
    """A freshly built (seeded) model of each registered family, with its DataModule."""
    torch.manual_seed(0)
    if name == "ffn":
        dm, raw = data["tabular"]
        return FeedForwardNet(num_features=dm.num_features, hidden_sizes=[8]), dm, raw
    if name == "tabm":
        dm, raw = data["tabular"]
        sizes = {"num_features": dm.num_features, "numeric_quantiles": dm.numeric_quantiles}
        return TabMNet(**sizes, k=4, d_block=16, n_bins=8), dm, raw
    if name in ("convnet", "autoencoder"):
        dm, raw = data["digits"]
        if name == "convnet":
            return ConvNet(input_shape=(1, 28, 28), num_classes=10, channels=[4]), dm, raw
        return AutoEncoder(input_shape=(1, 28, 28), hidden_sizes=[16], latent_dim=4), dm, raw
    if name in ("rnn", "improved_rnn", "transformer"):
        dm, raw = data["text"]
        sizes = {"vocab_size": dm.vocab_size, "pad_index": dm.pad_index, "embedding_dim": 8}
        if name == "rnn":
            return RNNClassifier(**sizes, hidden_size=8), dm, raw
        if name == "improved_rnn":
            return ImprovedRNN(**sizes, hidden_size=8), dm, raw
        model = TransformerClassifier(**sizes, num_heads=2, feedforward_dim=16, max_length=64)
        return model, dm, raw
    if name == "text_encoder":
        dm, raw = data["subword"]
        model = TextEncoderClassifier(backbone=str(data["encoder"]), head_sizes=[8])
        return model.load_pretrained(), dm, raw
    if name == "finetune":
        dm, raw = data["image"]
        model = FineTuneClassifier(backbone="resnet18", weights=None, head_sizes=[8])
        return model, dm, raw
    raise AssertionError(f"no export setup for model family {name!r}: add one here")


def _run_exported(bundle_dir: Path, batch) -> dict[str, np.ndarray]:
    """Run the bundle's model file as a caller would: ONNX Runtime or torch.jit.load."""
    bundle = json.loads((bundle_dir / BUNDLE_FILE).read_text())
    names = [o["name"] for o in bundle["outputs"]]
    tensors = batch if isinstance(batch, tuple) else (batch,)
    feed = {spec["name"]: t.numpy() for spec, t in zip(bundle["inputs"], tensors, strict=True)}
    path = bundle_dir / bundle["model_file"]
    if path.suffix == ".onnx":
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        wanted = {i.name for i in session.get_inputs()}
        out = session.run(None, {k: v for k, v in feed.items() if k in wanted})
    else:
        module = torch.jit.load(str(path))
        with torch.inference_mode():
            out = module(*tensors)
        out = [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]
    return dict(zip(names, out, strict=True))


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.slow  # a sweep over every family/recipe, or dlzoo in a subprocess
def test_every_family_exports_with_parity_on_raw_inputs(
    name: str, fmt: str, data: dict, tmp_path: Path
) -> None:
    model, dm, raw = _family(name, data)
    model.eval()
    bundle_json = export_model(model, dm, tmp_path / "bundle", fmt)
    bundle = json.loads(bundle_json.read_text())
    assert bundle["model_format"] == fmt
    assert bundle["parity"]["max_abs_diff"] <= TOLERANCE
    # two batch sizes (1 and 5), and for text two sequence lengths (one short text alone)
    for chunk in (raw[:1], raw[1:]):
        batch = dm.collate_inputs(dm.encode_inputs(chunk))
        with torch.inference_mode():
            expected = model.predict_step((batch,), 0)
        got = _run_exported(tmp_path / "bundle", batch)
        if "latent" in expected:
            np.testing.assert_allclose(got["latent"], expected["latent"].numpy(), atol=TOLERANCE)
            np.testing.assert_allclose(got["error"], expected["mse"].numpy(), atol=TOLERANCE)
            continue
        probs = expected["probs"].numpy()
        probs = np.stack([1 - probs, probs], axis=1) if probs.ndim == 1 else probs
        assert got["probabilities"].shape == (len(chunk), max(2, model.hparams.num_classes))
        np.testing.assert_allclose(got["probabilities"], probs, atol=TOLERANCE)
    if dm.input_kind == "text":
        lengths = [dm.collate_inputs(dm.encode_inputs(c))[0].shape[1] for c in (raw[:1], raw[1:])]
        assert lengths[0] != lengths[1]
        vocabulary = "tokenizer.json" if name == "text_encoder" else "vocab.json"
        assert (tmp_path / "bundle" / vocabulary).is_file()
    for file, digest in bundle["files"].items():  # every file of the bundle, with its sha256
        assert len(digest) == 64 and (tmp_path / "bundle" / file).is_file()


def test_packed_lstm_exports_as_its_padded_equivalent(data: dict) -> None:
    """ImprovedRNN packs sequences, which exporters cannot: PaddedLSTM gives the same states on
    padded input (2 layers, both directions, texts of very different lengths)."""
    from dlzoo.models.rnn import PaddedLSTM

    torch.manual_seed(1)
    lstm = torch.nn.LSTM(6, 5, num_layers=2, bidirectional=True, batch_first=True).eval()
    x = torch.randn(4, 11, 6)
    lengths = torch.tensor([11, 3, 7, 1])
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        x, lengths, batch_first=True, enforce_sorted=False
    )
    _, (expected, _) = lstm(packed)
    with torch.no_grad():
        np.testing.assert_allclose(PaddedLSTM(lstm)(x, lengths), expected.detach(), atol=1e-6)


def test_export_refuses_in_one_line_before_writing_anything(data: dict, tmp_path: Path) -> None:
    dm, _ = data["tabular"]
    from helpers.tiny_models import LazyWidthNet

    with pytest.raises(ExportError, match=r"not initialised \(lazy layers\)") as err:
        export_model(LazyWidthNet(), dm, tmp_path / "lazy")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "lazy").exists()
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    model = FeedForwardNet(num_features=dm.num_features, hidden_sizes=[4])
    with pytest.raises(ExportError, match="is not a dlzoo bundle"):
        export_model(model, dm, occupied)
    assert [p.name for p in occupied.iterdir()] == ["notes.txt"]
    with pytest.raises(ExportError, match="format must be 'onnx' or 'torchscript'"):
        export_model(model, dm, tmp_path / "x", "tflite")
    assert not list(tmp_path.glob(".*partial*"))


# ------------------------------------------------------------------ a bundle, outside dlzoo
def _fit_predict_export(tmp_path: Path, config: dict, predict_args: list[str]) -> tuple:
    """``dlzoo fit``, ``dlzoo predict`` and ``dlzoo export`` (ONNX); returns the predictions and
    the bundle folder."""
    import yaml

    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    main(["fit", "--config", str(config_path)])
    run = tmp_path / "runs" / "lightning_logs" / "version_0"
    ckpt = str(run / "checkpoints" / "last.ckpt")
    common = ["--config", str(run / "config.yaml"), "--ckpt_path", ckpt]
    main(["predict", *common, *predict_args, "--prediction_writer.output", str(tmp_path / "p.csv")])
    main(["export", *common, "--output", str(tmp_path / "bundle")])
    return pd.read_csv(tmp_path / "p.csv"), tmp_path / "bundle"


TRAINER = {
    "max_epochs": 2,
    "accelerator": "cpu",
    "devices": 1,
    "enable_progress_bar": False,
    "default_root_dir": None,
}


def test_bundle_alone_scores_raw_rows_with_numpy_and_onnxruntime(tmp_path: Path) -> None:
    make_frame(n=200).to_csv(tmp_path / "train.csv", index=False)
    new = make_frame(n=9, seed=5).drop(columns="target")
    new.loc[2, "color"] = "purple"  # a category never seen in training
    new.to_csv(tmp_path / "new.csv", index=False)
    config = {
        "seed_everything": 3,
        "trainer": {**TRAINER, "default_root_dir": str(tmp_path / "runs")},
        "model": {"class_path": "ffn", "init_args": {"hidden_sizes": [8]}},
        "data": {
            "class_path": "tabular",
            "init_args": {"filename": str(tmp_path / "train.csv"), "target": "target"},
        },
    }
    predicted, bundle_dir = _fit_predict_export(
        tmp_path, config, ["--data.init_args.predict_file", str(tmp_path / "new.csv")]
    )
    (tmp_path / "train.csv").unlink()  # the bundle needs no training data

    # --- what a user outside dlzoo writes: the JSON, numpy, ONNX Runtime
    bundle = json.loads((bundle_dir / "dlzoo-bundle.json").read_text())
    prep = bundle["preprocessing"]
    rows = pd.read_csv(tmp_path / "new.csv").to_dict("records")
    features = []
    for row in rows:
        numeric = prep["numeric"]
        values = [
            (row[c] - m) / s
            for c, m, s in zip(numeric["columns"], numeric["mean"], numeric["scale"], strict=True)
        ]
        values += [prep["binary"]["values"][row[c]] for c in prep["binary"]["columns"]]
        for column in prep["categorical"]["columns"]:
            categories = prep["categorical"]["categories"][column]
            one_hot = [0.0] * len(categories)
            value = str(row[column])
            one_hot[categories.index(value) if value in categories else 0] = 1.0
            values += one_hot
        features.append(values)
    session = onnxruntime.InferenceSession(str(bundle_dir / bundle["model_file"]))
    (probs,) = session.run(None, {"features": np.asarray(features, dtype=np.float32)})

    assert probs.shape == (9, 2)
    positive = bundle["classes"][1]
    np.testing.assert_allclose(probs[:, 1], predicted[f"prob_{positive}"], atol=2e-6)
    labels = [bundle["classes"][i] for i in probs.argmax(axis=1)]
    assert labels == predicted["label"].astype(str).tolist()


def test_bundle_alone_scores_raw_images_with_numpy_and_onnxruntime(tmp_path: Path) -> None:
    """PNG files whose shorter side is already resize_size: decoding and resizing are then
    exact in any library (PIL's and torchvision's antialiased resampling differ by a grey
    level, which a caller's own resize would add on top)."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("validation", 3)):
        for c, (name, color) in enumerate((("cats", 200), ("dogs", 60))):
            for i in range(count):
                pixels = np.clip(rng.normal(color, 30, (36, 40 + 2 * i, 3)), 0, 255)
                folder = tmp_path / "images" / split / name
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{c}{i}.png")
    config = {
        "seed_everything": 3,
        "trainer": {**TRAINER, "default_root_dir": str(tmp_path / "runs")},
        "model": {
            "class_path": "convnet",
            "init_args": {"channels": [4], "head_sizes": [8], "dropout": 0.0},
        },
        "data": {
            "class_path": "image_folder",
            "init_args": {
                "data_dir": str(tmp_path / "images"),
                "val_dir": "validation",
                "image_size": 32,
                "resize_size": 36,
                "batch_size": 4,
                "num_workers": 0,
            },
        },
    }
    predict_dir = tmp_path / "images" / "validation"
    predicted, bundle_dir = _fit_predict_export(
        tmp_path, config, ["--data.init_args.predict_dir", str(predict_dir)]
    )

    bundle = json.loads((bundle_dir / "dlzoo-bundle.json").read_text())
    prep = bundle["preprocessing"]
    assert prep["kind"] == "image" and prep["resize_size"] == 36 and prep["crop_size"] == 32
    batch = []
    for row in predicted["row"]:
        image = Image.open(io.BytesIO((predict_dir / row).read_bytes())).convert("RGB")
        assert min(image.size) == prep["resize_size"]
        pixels = np.asarray(image, dtype=np.float32) / 255.0  # H, W, 3
        size, (height, width) = prep["crop_size"], pixels.shape[:2]
        top, left = round((height - size) / 2), round((width - size) / 2)
        pixels = pixels[top : top + size, left : left + size]
        pixels = (pixels - np.asarray(prep["mean"])) / np.asarray(prep["std"])
        batch.append(pixels.transpose(2, 0, 1))
    session = onnxruntime.InferenceSession(str(bundle_dir / bundle["model_file"]))
    (probs,) = session.run(None, {"images": np.asarray(batch, dtype=np.float32)})
    positive = bundle["classes"][1]
    np.testing.assert_allclose(probs[:, 1], predicted[f"prob_{positive}"], atol=2e-6)
