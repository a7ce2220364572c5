"""Pretrained text encoders (issue 27), on a tiny random BERT and a WordPiece tokenizer trained
on the test's texts: every text task fits, predicts from the checkpoint alone (the encoder's
folder deleted), exports with parity and serves the same answers; the tokenizer travels in the
checkpoint and a different one is refused; frozen cached features equal the uncached path."""

from __future__ import annotations

import itertools
import json
import logging
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from lightning.pytorch import Trainer

from conftest import make_reviews, run_dirs
from dlzoo.__main__ import main as console_main
from dlzoo.cli import main
from dlzoo.data import TextClassificationDataModule
from dlzoo.data.preprocess.subword import SubwordPreprocessor, SubwordTokenizer
from dlzoo.deploy.serve import PredictionAPI, _Raw
from dlzoo.models import TextEncoderClassifier
from helpers.tiny_encoder import train_wordpiece, write_tiny_encoder


def reviews(n: int = 160, seed: int = 0) -> pd.DataFrame:
    """Reviews with a target of each task that their words decide."""
    frame = make_reviews(n, seed)
    positive = frame["label"] == 1
    cues = frame["text"].str.count("great|wonderful|loved|brilliant|moving|awful|boring|hated")
    frame["sentiment"] = np.where(positive, "pos", "neg")
    frame["kind"] = np.where(positive, np.where(cues > 1, "rave", "pos"), "neg")
    frame["tags"] = [
        "|".join(t for t, on in (("pos", p), ("long", len(x) > 90)) if on) or "none"
        for x, p in zip(frame["text"], positive, strict=True)
    ]
    frame["stars"] = np.where(positive, 8.0, 2.0) + cues.to_numpy() * 0.5
    return frame.drop(columns="label")


TASKS = {"binary": "sentiment", "multiclass": "kind", "multilabel": "tags", "regression": "stars"}


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts = reviews(160)["text"].tolist()
    return write_tiny_encoder(tmp_path_factory.mktemp("encoder") / "bert", texts)


def _fit(root: Path, backbone: Path, csv: Path, label: str, *extra: str) -> Path:
    main(
        [
            "fit",
            "--model",
            "text_encoder",
            "--model.backbone",
            str(backbone),
            "--model.lr",
            "3e-3",
            "--data",
            "text_csv",
            "--data.train_file",
            str(csv),
            "--data.label_column",
            label,
            "--data.tokenizer",
            "model",
            "--data.max_length",
            "40",
            "--data.truncation",
            "head+tail",
            "--data.batch_size",
            "16",
            "--data.cache_dir",
            str(root / "cache"),
            "--trainer.max_epochs",
            "4",
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.default_root_dir",
            str(root / "runs"),
            *extra,
        ]
    )
    (run,) = run_dirs(root / "runs")
    return run


@pytest.mark.slow  # a fit, a predict and an ONNX export per task
@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_text_task_fits_predicts_from_the_checkpoint_alone_exports_and_serves(
    task: str, encoder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backbone = tmp_path / "bert"
    shutil.copytree(encoder, backbone)
    label = TASKS[task]
    extra = ["--data.task", "regression"] if task == "regression" else []
    reviews(160)[["text", label]].to_csv(tmp_path / "train.csv", index=False)
    run = _fit(tmp_path, backbone, tmp_path / "train.csv", label, *extra)
    metrics = pd.read_csv(run / "metrics.csv")
    monitor = "val_rmse" if task == "regression" else "val_loss"
    curve = metrics[monitor].dropna().tolist()
    assert curve[-1] < curve[0], curve  # it learns

    shutil.rmtree(backbone)  # from here on, the checkpoint alone: no encoder folder, no CSV
    (tmp_path / "train.csv").unlink()
    monkeypatch.chdir(tmp_path)
    new = reviews(7, seed=5)[["text"]]
    new.loc[len(new)] = ["  "]  # an empty text still gets an answer
    new.to_csv(tmp_path / "new.csv", index=False)
    ckpt = str(run / "checkpoints" / "last.ckpt")
    common = ["--config", str(run / "config.yaml"), "--ckpt_path", ckpt]
    predict = ["--data.init_args.predict_file", str(tmp_path / "new.csv")]
    main(["predict", *common, *predict, "--prediction_writer.output", str(tmp_path / "p.csv")])
    predicted = pd.read_csv(tmp_path / "p.csv")
    assert len(predicted) == 8

    model = TextEncoderClassifier.load_from_checkpoint(ckpt, weights_only=True).eval()
    dm = TextClassificationDataModule.from_checkpoint(ckpt)
    assert dm.is_subword and dm.preprocessor.truncation == "head+tail"
    texts = new["text"].fillna("").tolist()
    batch = dm.preprocessor.collate(dm.preprocessor.encode(texts))
    with torch.inference_mode():
        expected = model.predict_step((batch,), 0)
    column = "prediction" if task == "regression" else predicted.columns[1]
    got = predicted[column].to_numpy()
    want = expected["prediction" if task == "regression" else "probs"].numpy()
    want = want if want.ndim == 1 else want[:, 0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)

    main(["export", *common, "--output", str(tmp_path / "bundle")])
    bundle = json.loads((tmp_path / "bundle" / "dlzoo-bundle.json").read_text())
    assert bundle["parity"]["max_abs_diff"] <= 1e-4, bundle["parity"]
    assert (tmp_path / "bundle" / "tokenizer.json").is_file()
    raw = [_Raw(texts)]
    (answers,) = PredictionAPI.for_bundle(tmp_path / "bundle", threads=1).predict(raw)
    (torch_answers,) = PredictionAPI(model, dm).predict(raw)
    assert len(answers) == 8
    for one, other in zip(answers, torch_answers, strict=True):
        assert one.keys() == other.keys()
        for key, value in other.items():
            if isinstance(value, (dict, float)):
                assert one[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
            else:
                assert one[key] == value, (key, one, other)


def test_a_bundle_tokenises_with_the_tokenizers_library_alone(
    encoder: Path, tmp_path: Path
) -> None:
    """The served preprocessing is the training one: the same ids for the same texts, the
    published tokenizer's own padding and truncation switched off, the text budget kept."""
    tokenizer = SubwordTokenizer.from_source(encoder)
    pre = SubwordPreprocessor(tokenizer, max_length=12, truncation="head+tail")
    text = " ".join(f"word{i}" for i in range(400)) + " brilliant ending"
    (ids,) = pre.encode([text])
    content = tokenizer.content_ids([text])[0]
    budget = 12 - 2
    assert (
        ids.tolist() == tokenizer.prefix + content[:3] + content[-(budget - 3) :] + tokenizer.suffix
    )
    assert pre.bounded(text) != text and len(pre.bounded(text)) < len(text)  # cut first
    (short,) = pre.encode(["loved it"])  # no padding to 16, no truncation at 16
    assert len(short) == 2 + len(tokenizer.content_ids(["loved it"])[0])
    pre.describe(tmp_path)
    again = SubwordPreprocessor.from_bundle(pre.bundle_args(), tmp_path)
    assert [t.tolist() for t in again.encode([text, "loved it"])] == [ids.tolist(), short.tolist()]


def test_frozen_cached_features_equal_the_uncached_path(
    encoder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    frame = reviews(80)[["text", "sentiment"]]
    frame.to_csv(tmp_path / "train.csv", index=False)
    settings = {
        "train_file": str(tmp_path / "train.csv"),
        "label_column": "sentiment",
        "tokenizer": str(encoder),
        "max_length": 40,
        "batch_size": 8,
        "cache_dir": str(tmp_path / "cache"),
    }
    model = TextEncoderClassifier(
        backbone=str(encoder), freeze_backbone=True, cache_features=True
    ).load_pretrained()
    model.eval()
    plain = TextClassificationDataModule(**settings)
    plain.setup("fit")
    val = plain._datasets["val"]
    (tokens, lengths), targets = plain._collate([val[i] for i in range(len(val))])
    for runtime in ("onnxruntime", "torch"):
        model.hparams.feature_runtime = runtime
        cached = TextClassificationDataModule(**settings)
        trainer = Trainer(max_epochs=1, logger=False, enable_checkpointing=False,
                          enable_progress_bar=False, accelerator="cpu")  # fmt: skip
        model.train()  # as a user's model comes to fit: the frozen encoder stays in eval mode
        with caplog.at_level(logging.INFO, logger="dlzoo"), warnings.catch_warnings():
            # the frozen encoder's eval mode is on purpose: Lightning's warning is not shown
            warnings.filterwarnings("error", r".*module\(s\) in eval mode")
            trainer.fit(model, datamodule=cached)  # the model runs the encoder once
        used_onnx = "backbone features by ONNX Runtime" in caplog.text
        assert used_onnx == (runtime == "onnxruntime"), caplog.text
        caplog.clear()
        model.eval()
        features, cached_targets = cached.val_dataloader().dataset[list(range(len(val)))]
        assert features.values.shape == (len(val), 16)  # pooled (N, hidden), not token ids
        torch.testing.assert_close(cached_targets, targets)
        with torch.inference_mode():  # the trained head: on cached features, and on the texts
            torch.testing.assert_close(
                model.logits(features), model.logits((tokens, lengths)), rtol=1e-4, atol=1e-5
            )


def test_a_hub_id_offline_without_a_cache_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    reviews(40)[["text", "sentiment"]].to_csv(tmp_path / "train.csv", index=False)
    args = ["fit", "--model", "bert", "--model.backbone", "sentence-transformers/all-MiniLM-L6-v2"]
    args += ["--data", "text_csv", "--data.train_file", str(tmp_path / "train.csv")]
    args += ["--data.label_column", "sentiment", "--data.tokenizer", "model"]
    monkeypatch.setattr(sys, "argv", ["dlzoo", *args])  # as the console script runs
    with pytest.raises(SystemExit) as exit:
        console_main()
    assert exit.value.code == 1
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1, err
    line = err[0]
    assert "sentence-transformers/all-MiniLM-L6-v2" in line and "hub" in line
    assert "fetch_text_encoder.sh" in line and "--model.init_args.backbone" in line


def test_a_checkpoint_refuses_a_different_tokenizer(encoder: Path, tmp_path: Path) -> None:
    frame = reviews(60)[["text", "sentiment"]]
    frame.to_csv(tmp_path / "train.csv", index=False)
    run = _fit(tmp_path, encoder, tmp_path / "train.csv", "sentiment", "--trainer.max_epochs", "1")
    ckpt = run / "checkpoints" / "last.ckpt"
    other = tmp_path / "other.json"
    train_wordpiece(["entirely different words here"] * 5, vocab_size=60).save(str(other))

    # the dlzoo command: the checkpoint's DataModule keeps its own tokenizer
    dm = TextClassificationDataModule.from_checkpoint(ckpt)
    assert dm.subword.digest == SubwordTokenizer.from_source(encoder).digest
    restored = TextClassificationDataModule(
        train_file=str(tmp_path / "train.csv"), label_column="sentiment", tokenizer=str(other)
    )
    with pytest.raises(ValueError, match="another tokenizer"):
        restored.load_state_dict(dm.state_dict())

    # from Python: the model trained with one tokenizer refuses data tokenised by another
    model = TextEncoderClassifier.load_from_checkpoint(ckpt, weights_only=True)
    trainer = Trainer(logger=False, enable_progress_bar=False, accelerator="cpu")
    with pytest.raises(ValueError, match="not the one this encoder was trained with"):
        trainer.validate(model, datamodule=restored)


def test_layer_wise_learning_rates_and_the_linear_warm_up(encoder: Path) -> None:
    from dlzoo.models.optimization import _warmup_then_linear

    model = TextEncoderClassifier(
        backbone=str(encoder), lr=1e-3, layer_lr_decay=0.5, lr_scheduler="none"
    )
    optimizer = model.configure_optimizers()
    lrs = {}  # parameter name -> (learning rate, weight decay)
    by_id = {id(p): n for n, p in model.named_parameters()}
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            lrs[by_id[id(parameter)]] = (group["lr"], group["weight_decay"])
    assert len(lrs) == sum(1 for p in model.parameters() if p.requires_grad)
    head = lrs["network.head.0.weight"]
    top = lrs["network.backbone.encoder.layer.1.output.dense.weight"]
    low = lrs["network.backbone.encoder.layer.0.output.dense.weight"]
    embeddings = lrs["network.backbone.embeddings.word_embeddings.weight"]
    assert head == (1e-3, 0.01)
    assert top[0] == pytest.approx(5e-4) and low[0] == pytest.approx(2.5e-4)
    assert embeddings[0] == pytest.approx(1.25e-4)
    assert lrs["network.backbone.encoder.layer.0.output.LayerNorm.weight"][1] == 0.0
    assert lrs["network.head.0.bias"][1] == 0.0
    # 10 steps, 2 of warm-up: up to the full rate, then down to 0 at the last step
    factors = [_warmup_then_linear(2, 10, step) for step in range(11)]
    assert factors[0] < factors[1] < factors[2] == 1.0 and factors[10] == 0.0
    assert all(a >= b for a, b in itertools.pairwise(factors[2:]))


def test_a_poisoned_request_never_changes_another_requests_answer(
    encoder: Path, tmp_path: Path
) -> None:
    reviews(40)[["text", "sentiment"]].to_csv(tmp_path / "train.csv", index=False)
    dm = TextClassificationDataModule(
        train_file=str(tmp_path / "train.csv"), label_column="sentiment", tokenizer=str(encoder),
        max_length=32, cache_dir=str(tmp_path / "cache"),
    )  # fmt: skip
    model = TextEncoderClassifier(backbone=str(encoder)).load_pretrained().eval()
    api = PredictionAPI(model, dm)
    good, other = ["loved it, brilliant"], ["boring mess " * 50, ""]
    alone = [api.predict(_Raw(good)), api.predict(_Raw(other))]
    together = api.predict([_Raw(good), _Raw([12, None]), _Raw(other), _Raw(["x" * 10])])
    # the same answers; padded to another length in a batch, a float may move in its last digit
    for got, expected in ((together[0], alone[0]), (together[2], alone[1])):
        assert [row["label"] for row in got] == [row["label"] for row in expected]
        for row, want in zip(got, expected, strict=True):
            assert row["probabilities"] == pytest.approx(want["probabilities"], abs=1e-5)
    assert together[1].status == 422 and "a text is a string" in together[1].message
    assert isinstance(together[3], list) and len(together[3]) == 1
