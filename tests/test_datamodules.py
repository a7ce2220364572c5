"""Every registered DataModule keeps the contract: tiny data -> ``dlzoo fit`` one epoch ->
checkpoint -> restored in a fresh process from the checkpoint alone -> raw inputs through its
preprocessor give the same outputs as ``dlzoo predict``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import dlzoo
from conftest import (
    HELPERS,
    digit_images,
    make_frame,
    make_reviews,
    run_dirs,
    write_acl_imdb,
    write_image_tree,
    write_mnist_idx,
)
from dlzoo.cli import main
from dlzoo.data.base import DataModule, Preprocessor

#: real servers, subprocesses and kills: left out of `nox -s tests_fast`
pytestmark = pytest.mark.slow

BANK_CSV = Path(dlzoo.__file__).parent / "data" / "_files" / "bank.csv"
FFN = ["--model", "ffn", "--model.hidden_sizes", "[8]"]
CONV = ["--model", "convnet", "--model.channels", "[4]", "--model.head_sizes", "[8]"]
RNN = ["--model", "rnn", "--model.embedding_dim", "8", "--model.hidden_size", "8"]
IMAGE_SIZE = ["--data.image_size", "16", "--data.resize_size", "18", "--data.batch_size", "4"]


def _tabular(root: Path) -> tuple[list[str], list[str], object]:
    make_frame(n=120).to_csv(root / "rows.csv", index=False)
    new = make_frame(n=6, seed=9).drop(columns="target")
    new.to_csv(root / "new.csv", index=False)
    data = ["--data", "tabular", "--data.filename", str(root / "rows.csv")]
    data += ["--data.target", "target"]
    return [*FFN, *data], ["--data.predict_file", str(root / "new.csv")], _records(new)


def _records(frame: pd.DataFrame) -> list[dict]:
    return json.loads(frame.to_json(orient="records"))


def _bank(root: Path) -> tuple[list[str], list[str], object]:
    new = pd.read_csv(BANK_CSV).head(6).drop(columns="deposit")
    new.to_csv(root / "new.csv", index=False)
    data = ["--data", "bank_marketing", "--trainer.limit_train_batches", "4"]
    data += ["--data.batch_size", "64"]
    return [*FFN, *data], ["--data.predict_file", str(root / "new.csv")], _records(new)


def _images(root: Path, name: str) -> tuple[list[str], list[str], object]:
    write_image_tree(root / "images", {"train": 6, "validation": 2, "new": 1})
    data = ["--data", name, "--data.data_dir", str(root / "images"), *IMAGE_SIZE]
    data += ["--data.val_dir", "validation", "--data.num_workers", "0"]
    new = root / "images" / "new"
    files = sorted(str(p) for p in new.rglob("*.jpg"))
    return [*CONV, *data], ["--data.predict_dir", str(new)], {"files": files}


def _text(root: Path) -> tuple[list[str], list[str], object]:
    make_reviews(80).to_csv(root / "reviews.csv", index=False)
    texts = make_reviews(5, seed=4)["text"].tolist()
    pd.DataFrame({"text": texts}).to_csv(root / "new.csv", index=False)
    data = ["--data", "text_csv", "--data.train_file", str(root / "reviews.csv")]
    data += ["--data.tokenizer", "simple", "--data.cache_dir", str(root / "cache")]
    return [*RNN, *data], ["--data.predict_file", str(root / "new.csv")], texts


def _imdb(root: Path) -> tuple[list[str], list[str], object]:
    write_acl_imdb(root / "imdb", per_class=20)
    texts = make_reviews(5, seed=4)["text"].tolist()
    pd.DataFrame({"text": texts}).to_csv(root / "new.csv", index=False)
    data = ["--data", "imdb", "--data.data_dir", str(root / "imdb"), "--data.tokenizer", "simple"]
    data += ["--data.cache_dir", str(root / "cache")]
    return [*RNN, *data], ["--data.predict_file", str(root / "new.csv")], texts


def _mnist(root: Path) -> tuple[list[str], list[str], object]:
    write_mnist_idx(root / "mnist", n_train=100, n_test=20)
    pixels = digit_images(np.arange(4), seed=3).reshape(4, -1)
    columns = [f"pixel{i}" for i in range(784)]
    pd.DataFrame(pixels, columns=columns).to_csv(root / "new.csv", index=False)
    data = ["--data", "mnist", "--data.data_dir", str(root / "mnist"), "--data.download", "false"]
    return [*FFN, *data], ["--data.predict_file", str(root / "new.csv")], pixels.tolist()


SETUPS = {
    "tabular": _tabular,
    "bank_marketing": _bank,
    "image_folder": lambda root: _images(root, "image_folder"),
    "cats_dogs": lambda root: _images(root, "cats_dogs"),
    "text_csv": _text,
    "imdb": _imdb,
    "mnist": _mnist,
}


def test_every_registered_datamodule_has_a_setup_here() -> None:
    assert set(SETUPS) == set(dlzoo.list_datamodules())


def test_every_registered_datamodule_keeps_the_contract() -> None:
    for name in dlzoo.list_datamodules():
        cls = dlzoo.get_datamodule_class(name)
        assert issubclass(cls, DataModule), name
        assert cls.preprocessor is not DataModule.preprocessor, f"{name} has no preprocessor"


def test_every_input_option_is_an_attribute_a_checkpoint_is_checked_against(
    tmp_path: Path,
) -> None:
    # refuse_changed_options reads each of input_options from the DataModule (no probing)
    import inspect

    for name in dlzoo.list_datamodules():
        cls = dlzoo.get_datamodule_class(name)
        required = [
            p for p in inspect.signature(cls).parameters.values()
            if p.default is p.empty and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        ]  # fmt: skip
        datamodule = cls(**{p.name: str(tmp_path / p.name) for p in required})  # reads nothing
        assert cls.input_options, name
        missing = [option for option in cls.input_options if not hasattr(datamodule, option)]
        assert missing == [], name


@pytest.fixture(scope="module")
def predicted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Per DataModule: ``dlzoo predict``'s CSV, and the fresh process's CSV of raw inputs."""
    root = tmp_path_factory.mktemp("datamodules")
    spec, results = [], {}
    for name, setup in SETUPS.items():
        folder = root / name
        folder.mkdir()
        args, predict_args, raw = setup(folder)
        trainer = ["--trainer.max_epochs", "1", "--trainer.accelerator", "cpu"]
        trainer += ["--trainer.limit_val_batches", "2"]  # the contract, not the metrics
        trainer += ["--trainer.enable_progress_bar", "false"]
        trainer += ["--trainer.default_root_dir", str(folder / "runs")]
        main(["fit", *args, *trainer])
        (run,) = run_dirs(folder / "runs")
        ckpt = run / "checkpoints" / "last.ckpt"
        expected = folder / "predict.csv"
        output = ["--prediction_writer.output", str(expected)]
        main(["predict", *args, *trainer, *predict_args, "--ckpt_path", str(ckpt), *output])
        saved = yaml.safe_load((run / "config.yaml").read_text())
        spec.append(
            {
                "datamodule": saved["data"]["class_path"],
                "model": saved["model"]["class_path"],
                "ckpt": str(ckpt),
                "raw": raw,
                "out": str(folder / "raw.csv"),
            }
        )
        results[name] = (expected, folder / "raw.csv")
    (root / "spec.json").write_text(json.dumps(spec))
    subprocess.run(
        [sys.executable, str(HELPERS / "predict_raw.py"), str(root / "spec.json")],
        check=True,
        timeout=300,
    )
    return results


@pytest.mark.parametrize("name", sorted(SETUPS))
def test_raw_inputs_through_the_preprocessor_give_dlzoo_predicts_outputs(
    name: str, predicted: dict[str, tuple[Path, Path]]
) -> None:
    expected_csv, raw_csv = predicted[name]
    expected, got = pd.read_csv(expected_csv), pd.read_csv(raw_csv)
    assert list(got.columns) == list(expected.columns) and len(got) == len(expected) > 0
    values = [c for c in expected.columns if c not in ("row", "label")]
    np.testing.assert_allclose(got[values], expected[values], atol=2e-6)
    assert got["label"].tolist() == expected["label"].tolist()


def test_preprocessors_keep_the_protocol(predicted: dict[str, tuple[Path, Path]]) -> None:
    from dlzoo.data import TabularDataModule

    dm = TabularDataModule(filename=str(BANK_CSV), target="deposit")
    assert isinstance(dm.preprocessor, Preprocessor)
