"""``dlzoo predict --runtime``: the network in ONNX Runtime gives the predictions eager torch
gives (within 1e-5; the CSV has 6 decimals), for rows and for texts through the packed BiLSTM;
``auto`` keeps small predict sets in torch (issue 18)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import make_frame, make_reviews
from dlzoo.cli import main
from dlzoo.cli.trainer import OnnxPredict

TRAINER = {"max_epochs": 1, "accelerator": "cpu", "devices": 1, "enable_progress_bar": False}


def _fit(root: Path, model: dict, data: dict) -> list[str]:
    config = {"seed_everything": 1, "trainer": {**TRAINER, "default_root_dir": str(root)}}
    config.update({"model": model, "data": data})
    path = root / "config.yaml"
    root.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    main(["fit", "--config", str(path)])
    run = root / "lightning_logs" / "version_0"
    return [
        "--config",
        str(run / "config.yaml"),
        "--ckpt_path",
        str(run / "checkpoints" / "last.ckpt"),
    ]


def _predict(common: list[str], extra: list[str], runtime: str, out: Path) -> pd.DataFrame:
    main(["predict", *common, *extra, "--runtime", runtime, "--prediction_writer.output", str(out)])
    return pd.read_csv(out)


@pytest.mark.parametrize("kind", ["tabular", "text"])
@pytest.mark.slow  # a sweep over every family/recipe, or dlzoo in a subprocess
def test_onnxruntime_predictions_equal_torch(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if kind == "tabular":
        make_frame(n=200).to_csv(tmp_path / "train.csv", index=False)
        make_frame(n=40, seed=4).drop(columns="target").to_csv(tmp_path / "new.csv", index=False)
        data = {
            "class_path": "tabular",
            "init_args": {"filename": str(tmp_path / "train.csv"), "target": "target"},
        }
        model = {"class_path": "ffn", "init_args": {"hidden_sizes": [8]}}
    else:
        make_reviews(120).to_csv(tmp_path / "train.csv", index=False)
        make_reviews(40, seed=4).drop(columns="label").to_csv(tmp_path / "new.csv", index=False)
        data = {
            "class_path": "text_csv",
            "init_args": {
                "train_file": str(tmp_path / "train.csv"),
                "tokenizer": "simple",
                "cache_dir": str(tmp_path / "cache"),
            },
        }
        model = {"class_path": "improved_rnn", "init_args": {"embedding_dim": 8, "hidden_size": 8}}
    common = _fit(tmp_path / "run", model, data)
    extra = [
        "--data.init_args.predict_file",
        str(tmp_path / "new.csv"),
        "--data.init_args.batch_size",
        "8",
    ]
    eager = _predict(common, extra, "torch", tmp_path / "torch.csv")
    with caplog.at_level(logging.INFO, logger="dlzoo"):
        onnx = _predict(common, extra, "onnxruntime", tmp_path / "onnx.csv")
    assert "the network runs in ONNX Runtime" in caplog.text
    assert len(onnx) == len(eager) == 40
    column = next(c for c in eager.columns if c.startswith("prob_"))
    np.testing.assert_allclose(onnx[column], eager[column], atol=2e-6)
    assert onnx["label"].tolist() == eager["label"].tolist()
    # auto: 5 batches of 8 are fewer than OnnxPredict.MIN_BATCHES, so torch runs them
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="dlzoo"):
        auto = _predict(common, extra, "auto", tmp_path / "auto.csv")
    assert "ONNX Runtime" not in caplog.text and OnnxPredict.MIN_BATCHES > 5
    pd.testing.assert_frame_equal(auto, eager)
