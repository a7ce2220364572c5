"""Every model family through the ``dlzoo`` command: fit, crash, resume, validate, test, predict.

Configs name models and DataModules by their registered names. The trained checkpoint is what
every later use starts from, so each registered model is fitted on
tiny data, killed mid-epoch (SIGKILL, a real subprocess), resumed from ``last.ckpt``, and the
result must equal an uninterrupted run; ``validate``, ``test`` and ``predict`` then run from the
checkpoint with the run's own ``config.yaml``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from conftest import (
    HELPERS,
    last_metrics,
    make_frame,
    make_reviews,
    run_dirs,
    write_image_tree,
    write_mnist_idx,
)
from dlzoo.cli import main
from dlzoo.registry import MODELS, init_arguments

#: real servers, subprocesses and kills: left out of `nox -s tests_fast`
pytestmark = pytest.mark.slow

COMMON = {
    "seed_everything": 7,
    "trainer": {
        "max_epochs": 3,
        "accelerator": "cpu",
        "devices": 1,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "log_every_n_steps": 1,
    },
}


def _family_config(family: str, data: Path) -> tuple[dict, list[str]]:
    """Model and data sections for ``family`` on tiny data under ``data``, and predict args."""
    if family in ("ffn", "tabm"):
        make_frame(n=330).to_csv(data / "train.csv", index=False)  # 66 val and 66 test rows
        make_frame(n=7, seed=3).drop(columns="target").to_csv(data / "new.csv", index=False)
        sizes = {"hidden_sizes": [16]} if family == "ffn" else {"k": 4, "d_block": 16}
        model = {"class_path": family, "init_args": {**sizes, "dropout": 0.2}}
        dm = {
            "class_path": "tabular",
            "init_args": {
                "filename": str(data / "train.csv"),
                "target": "target",
                "test_fraction": 0.2,
                "batch_size": 32,
            },
        }
        return {"model": model, "data": dm}, [
            "--data.init_args.predict_file",
            str(data / "new.csv"),
        ]
    if family in ("convnet", "autoencoder"):
        write_mnist_idx(data, n_train=120, n_test=30)
        init = {"data_dir": str(data), "batch_size": 16, "download": False}
        if family == "convnet":
            model = {"channels": [4, 8], "head_sizes": [16], "dropout": 0.3}
        else:
            model = {"hidden_sizes": [32], "latent_dim": 8}
            init["normalize"] = False
        dm = {"class_path": "mnist", "init_args": init}
        model = {"class_path": family, "init_args": model}
        return {"model": model, "data": dm}, []
    if family in ("rnn", "improved_rnn", "transformer"):
        make_reviews(160).to_csv(data / "train.csv", index=False)
        make_reviews(30, seed=5).to_csv(data / "test.csv", index=False)
        make_reviews(9, seed=6).drop(columns="label").to_csv(data / "new.csv", index=False)
        sizes = {"embedding_dim": 8}
        if family == "transformer":
            sizes.update(num_heads=2, num_layers=1, dropout=0.1)
        else:
            sizes.update(hidden_size=8)
        dm = {
            "class_path": "text_csv",
            "init_args": {
                "train_file": str(data / "train.csv"),
                "test_file": str(data / "test.csv"),
                "tokenizer": "simple",
                "val_fraction": 0.2,
                "batch_size": 16,
                "cache_dir": str(data / "cache"),
            },
        }
        model = {"class_path": family, "init_args": sizes}
        config = {"model": model, "data": dm}
        return config, ["--data.init_args.predict_file", str(data / "new.csv")]
    if family == "text_encoder":  # a tiny random BERT and its WordPiece tokenizer
        from helpers.tiny_encoder import write_tiny_encoder

        frame = make_reviews(160)
        frame.to_csv(data / "train.csv", index=False)
        make_reviews(30, seed=5).to_csv(data / "test.csv", index=False)
        make_reviews(9, seed=6).drop(columns="label").to_csv(data / "new.csv", index=False)
        encoder = write_tiny_encoder(data / "bert", frame["text"].tolist())
        dm = {
            "class_path": "text_csv",
            "init_args": {
                "train_file": str(data / "train.csv"),
                "test_file": str(data / "test.csv"),
                "tokenizer": "model",
                "max_length": 48,
                "truncation": "head+tail",
                "val_fraction": 0.2,
                "batch_size": 16,
                "cache_dir": str(data / "cache"),
            },
        }
        model = {"class_path": family, "init_args": {"backbone": str(encoder), "lr": 1e-3}}
        config = {"model": model, "data": dm}
        return config, ["--data.init_args.predict_file", str(data / "new.csv")]
    if family == "finetune":
        write_image_tree(data / "images", {"train": 8, "validation": 3, "new": 2})
        model = {"backbone": "resnet18", "weights": None, "head_sizes": [8]}
        dm = {
            "class_path": "image_folder",
            "init_args": {
                "data_dir": str(data / "images"),
                "val_dir": "validation",
                "test_dir": "validation",
                "image_size": 32,
                "resize_size": 36,
                "batch_size": 4,
                "num_workers": 0,
            },
        }
        config = {"model": {"class_path": "vgg16_finetune", "init_args": model}, "data": dm}
        return config, ["--data.init_args.predict_dir", str(data / "images" / "new")]
    raise AssertionError(f"no round-trip setup for model family {family!r}: add one here")


FAMILIES = sorted(MODELS)


@pytest.fixture(scope="module")
def killed_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path, list]]:
    """Per family: its folder and config, after a ``dlzoo fit`` killed in the middle of epoch 1.

    The subprocesses run side by side: each spends most of its time importing Lightning.
    """
    runs, processes = {}, {}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HELPERS), *sys.path])}
    killer = '[{"class_path": "killer.KillAtBatch", "init_args": {"epoch": 1, "batch": 2}}]'
    for family in FAMILIES:
        root = tmp_path_factory.mktemp(family)
        sections, predict_args = _family_config(family, root)
        config = root / "config.yaml"
        config.write_text(yaml.safe_dump({**COMMON, **sections}))
        runs[family] = (root, config, predict_args)
        command = [str(Path(sys.executable).with_name("dlzoo")), "fit", "--config", str(config)]
        command += [
            "--trainer.default_root_dir",
            str(root / "killed"),
            "--trainer.callbacks",
            killer,
        ]
        processes[family] = subprocess.Popen(
            command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    for family, process in processes.items():
        output, _ = process.communicate(timeout=600)
        assert process.returncode == -9, (
            f"{family}: expected SIGKILL, got {process.returncode}\n{output[-3000:]}"
        )
    return runs


def _names(folder: Path, prefix: str = "") -> set[str]:
    return {path.name for path in folder.glob(f"{prefix}*.ckpt")}


@pytest.mark.parametrize("family", FAMILIES)
def test_checkpoint_resumes_exactly_and_serves_every_subcommand(
    family: str, killed_runs: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, config, predict_args = killed_runs[family]
    monkeypatch.chdir(root)
    monkeypatch.setenv("DLZOO_DATA", str(root / "dlzoo_cache"))
    (killed,) = run_dirs(root / "killed")
    assert last_metrics(killed)["epoch"] == 0  # epoch 1 died before it ended
    last = killed / "checkpoints" / "last.ckpt"
    saved = torch.load(last, weights_only=True)
    model_class = MODELS[family]
    # the checkpoint holds only arguments the model takes: a size the CLI linked but the model
    # lacks (num_features for a ConvNet) would break every reload
    assert set(saved["hyper_parameters"]) - {"_class_path", "_instantiator"} <= init_arguments(
        model_class
    )

    main(["fit", "--config", str(config), "--trainer.default_root_dir", str(root / "whole")])
    # the same command again, with the checkpoint (the saved config.yaml holds the killer)
    again = ["--trainer.default_root_dir", str(root / "killed"), "--ckpt_path", str(last)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main(["fit", "--config", str(config), *again])
    assert not [w for w in caught if "dirpath has changed" in str(w.message)]
    (whole,) = run_dirs(root / "whole")
    resumed = run_dirs(root / "killed")[-1]
    # the resumed run's folder keeps the best checkpoint as the whole run's does (the killed
    # run's best carried over, replaced only by a better one), and the killed run keeps its own
    assert _names(resumed / "checkpoints") == _names(whole / "checkpoints")
    assert _names(killed / "checkpoints") == {"last.ckpt", *_names(killed / "checkpoints", "best")}
    assert len(_names(killed / "checkpoints", "best")) == 1
    expected, got = last_metrics(whole), last_metrics(resumed)
    assert got["epoch"] == expected["epoch"] == 2
    for key in expected:
        if key.startswith(("val_", "train_")):
            assert got[key] == pytest.approx(expected[key], rel=1e-6, abs=1e-7), key
    a = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(whole / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert (resumed / "loss.png").is_file()
    assert a.keys() == b.keys()
    for name in b:
        torch.testing.assert_close(a[name], b[name], rtol=1e-6, atol=1e-7, msg=name)

    checkpoint = resumed / "checkpoints" / "last.ckpt"
    for subcommand in ("validate", "test"):
        main([subcommand, "--config", str(resumed / "config.yaml"), "--ckpt_path", str(checkpoint)])
    (validated,) = run_dirs(root / "killed", "validate")
    (tested,) = run_dirs(root / "killed", "test")
    stage = "val_loss" if family == "autoencoder" else "val_auroc"
    assert last_metrics(validated)[stage] == pytest.approx(expected[stage], rel=1e-5)
    assert any(k.startswith("test_") for k in last_metrics(tested))

    output = root / "predictions.csv"
    main(
        [
            "predict",
            "--config",
            str(resumed / "config.yaml"),
            "--ckpt_path",
            str(checkpoint),
            "--prediction_writer.output",
            str(output),
            *predict_args,
        ]
    )
    table = pd.read_csv(output)
    assert len(table) > 0
    assert "mse" in table.columns if family == "autoencoder" else "label" in table.columns


def test_predict_from_the_checkpoint_alone_in_a_fresh_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # tabular, text and image models: predict needs the checkpoint and the new inputs only; the
    # training data (and its folder) are gone, and the predictions are those made before
    monkeypatch.setenv("DLZOO_DATA", str(tmp_path / "dlzoo_cache"))
    jobs = {}
    for family in ("ffn", "improved_rnn", "finetune"):
        data = tmp_path / family / "data"
        data.mkdir(parents=True)
        sections, predict_args = _family_config(family, data)
        config = tmp_path / family / "config.yaml"
        config.write_text(yaml.safe_dump({**COMMON, **sections}))
        root = tmp_path / family / "runs"
        main(
            [
                "fit",
                "--config",
                str(config),
                "--trainer.max_epochs",
                "1",
                "--trainer.default_root_dir",
                str(root),
            ]
        )
        (run,) = run_dirs(root)
        before = tmp_path / family / "before.csv"
        main(
            [
                "predict",
                "--config",
                str(run / "config.yaml"),
                "--ckpt_path",
                str(run / "checkpoints" / "last.ckpt"),
                "--prediction_writer.output",
                str(before),
                *predict_args,
            ]
        )
        # a fresh folder: the checkpoint, the run's config and the new inputs, nothing else
        fresh = tmp_path / family / "fresh"
        fresh.mkdir()
        (fresh / "model.ckpt").write_bytes((run / "checkpoints" / "last.ckpt").read_bytes())
        (fresh / "config.yaml").write_text((run / "config.yaml").read_text())
        new_inputs = Path(predict_args[1])
        moved = fresh / new_inputs.name
        new_inputs.rename(moved)
        for path in sorted(data.rglob("*"), reverse=True):  # the training data is gone
            path.rmdir() if path.is_dir() else path.unlink()
        data.rmdir()
        command = [
            str(Path(sys.executable).with_name("dlzoo")),
            "predict",
            "--config",
            "config.yaml",
            "--ckpt_path",
            "model.ckpt",
            "--prediction_writer.output",
            "after.csv",
            predict_args[0],
            str(moved),
        ]
        jobs[family] = (
            before,
            fresh,
            subprocess.Popen(
                command,
                cwd=fresh,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env={**os.environ, "DLZOO_DATA": str(fresh / "cache")},
            ),
        )
    for family, (before, fresh, process) in jobs.items():
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, f"{family}\n{output[-4000:]}"
        expected, got = pd.read_csv(before), pd.read_csv(fresh / "after.csv")
        assert list(got.columns) == list(expected.columns) and len(got) == len(expected) > 0
        pd.testing.assert_frame_equal(got, expected, check_exact=False, atol=1e-6)
