"""The ``dlzoo`` command as users run it: fit, predict, configs, resume, mixed precision, errors."""

from __future__ import annotations

import functools
import http.server
import json
import pickle
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import (
    HELPERS,
    REPO,
    RUN_FILES,
    last_metrics,
    make_frame,
    make_reviews,
    run_dirs,
    run_dlzoo,
    write_acl_imdb,
    write_config,
    write_image_tree,
    write_mnist_idx,
)
from dlzoo.cli import default_loggers, main, make_cli
from dlzoo.cli.checkpoint import AtomicCheckpointIO
from dlzoo.data import IMDBDataModule, TabularDataModule
from dlzoo.models import FeedForwardNet, ImprovedRNN

CONFIGS = sorted((REPO / "src" / "dlzoo" / "recipes").glob("*.yaml"))  # the shipped recipes


@pytest.mark.slow  # a sweep over every family/recipe, or dlzoo in a subprocess
def test_fit_then_predict_with_the_command(
    config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # fit in this process (main() is what the console script calls; `dlzoo fit` itself runs as
    # a subprocess in the DDP and kill-and-resume tests), predict through the console script
    monkeypatch.chdir(tmp_path)
    main(["fit", "--config", str(config_file)])
    (run,) = run_dirs(tmp_path / "runs")
    assert {p.name for p in run.iterdir()} >= RUN_FILES
    checkpoints = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert len(checkpoints) == 2 and "last.ckpt" in checkpoints
    assert checkpoints[0].startswith("best-epoch=") and "val_auroc=" in checkpoints[0]
    metrics = last_metrics(run)
    assert metrics["val_auroc"] > 0.8 and metrics["epoch"] == 2
    # last.ckpt is the final epoch, not the last epoch that improved the best score
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 2
    # nothing but the run directory was written (all artifacts follow default_root_dir)
    assert {p.name for p in tmp_path.iterdir()} == {"train.csv", "config.yaml", "runs"}

    raw = tmp_path / "raw.csv"
    make_frame(n=9, seed=11).drop(columns="target").to_csv(raw, index=False)
    best = run / "checkpoints" / checkpoints[0]
    result = run_dlzoo(
        "predict",
        "--config",
        str(run / "config.yaml"),
        "--ckpt_path",
        str(best),
        "--data.predict_file",
        str(raw),
        cwd=tmp_path,
    )
    # beside the training runs, never inside one; the training run stays as it was
    predictions = tmp_path / "runs" / "predictions.csv"
    assert run_dirs(tmp_path / "runs") == [run] and not (run / "predictions.csv").exists()
    assert "predictions for 9 rows written to" in result.stdout + result.stderr
    table = pd.read_csv(predictions)
    assert list(table.columns) == ["row", "prob_yes", "label"] and len(table) == 9
    assert table["label"].isin(["yes", "no"]).all()
    assert ((table["prob_yes"] >= 0.5) == (table["label"] == "yes")).all()
    # the same numbers as loading the checkpoint by hand
    model = FeedForwardNet.load_from_checkpoint(best, weights_only=True).eval()
    (features,) = TabularDataModule.from_checkpoint(best).transform(pd.read_csv(raw))
    expected = model.predict_proba(features).detach()
    torch.testing.assert_close(
        torch.tensor(table["prob_yes"].to_numpy()).float(), expected, atol=1e-6, rtol=0
    )


def _tiny_data(config: Path, tmp_path: Path) -> list[str]:
    """Arguments that point a config at small data the test writes (the real sets are not here)."""
    name = config.stem
    if name.startswith("mnist"):
        data = write_mnist_idx(tmp_path / "mnist", n_train=120, n_test=30)
        return ["--data.init_args.data_dir", str(data), "--data.init_args.batch_size", "16"]
    if name.startswith("catsdogs"):
        write_image_tree(tmp_path / "cd" / "cats_and_dogs", {"train": 6, "validation": 3})
        args = ["--data.init_args.data_dir", str(tmp_path / "cd"), "--data.init_args.url", "null"]
        args += ["--data.init_args.batch_size", "4", "--data.init_args.num_workers", "0"]
        args += ["--data.init_args.image_size", "32", "--data.init_args.resize_size", "36"]
        if name != "catsdogs_convnet":  # no ImageNet weights here: random ones, 32 px images
            args += ["--model.init_args.weights", "null", "--data.init_args.preprocessing", "null"]
        return args
    if name.startswith("imdb"):
        data = write_acl_imdb(tmp_path / "imdb", per_class=20)
        args = ["--data.init_args.data_dir", str(data), "--data.init_args.url", "null"]
        args += ["--data.init_args.batch_size", "8"]
        if "glove" in name:  # a tiny GloVe-format file of 50-d vectors for the reviews' words
            rng = np.random.default_rng(0)
            lines = [
                " ".join([word, *(f"{v:.4f}" for v in rng.normal(size=50))])
                for word in ["the", "film", "great", "awful", "plot", "boring", "loved"]
            ]
            (tmp_path / "glove.txt").write_text("\n".join(lines) + "\n")
            args += ["--data.init_args.vectors", str(tmp_path / "glove.txt")]
        if "minilm" in name:  # a tiny random BERT and tokenizer instead of all-MiniLM-L6-v2
            from helpers.tiny_encoder import write_tiny_encoder

            texts = make_reviews(80)["text"].tolist()
            encoder = write_tiny_encoder(tmp_path / "bert", texts, positions=256)
            args += ["--model.init_args.backbone", str(encoder)]
        return args
    if name.startswith("diamonds"):  # the diamonds columns, 60 rows
        rng = np.random.default_rng(0)
        carat = rng.uniform(0.2, 2.5, 60).round(2)
        frame = pd.DataFrame(
            {
                "carat": carat,
                "cut": rng.choice(["Fair", "Good", "Ideal"], 60),
                "color": rng.choice(list("DEFGHIJ"), 60),
                "clarity": rng.choice(["SI1", "VS2", "IF"], 60),
                "depth": rng.normal(61.7, 1.4, 60).round(1),
                "table": rng.normal(57, 2, 60).round(0),
                "price": (3900 * carat**1.6 + rng.normal(0, 300, 60)).round(0).clip(326),
                "x": (carat * 3 + 3).round(2),
                "y": (carat * 3 + 3).round(2),
                "z": (carat * 2 + 2).round(2),
            }
        )
        frame.to_csv(tmp_path / "diamonds.csv", index=False)
        return ["--data.init_args.data_dir", str(tmp_path), "--data.init_args.url", "null"]
    return []


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
@pytest.mark.slow  # a sweep over every family/recipe, or dlzoo in a subprocess
def test_example_config_runs_in_a_tiny_setting(config: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DLZOO_DATA", str(tmp_path / "cache"))
    main(
        [
            "fit",
            "--config",
            str(config),
            "--trainer.default_root_dir",
            str(tmp_path / "runs"),
            "--trainer.max_epochs",
            "1",
            "--trainer.limit_train_batches",
            "3",
            "--trainer.limit_val_batches",
            "2",
            "--trainer.enable_progress_bar",
            "false",
            *_tiny_data(config, tmp_path),
        ]
    )
    (run,) = run_dirs(tmp_path / "runs")
    assert (run / "checkpoints" / "last.ckpt").is_file()
    saved = yaml.safe_load((run / "config.yaml").read_text())
    if saved["model"]["class_path"].endswith("AutoEncoder"):
        assert "val_mse" in last_metrics(run)
        assert (run / "reconstructions.png").is_file()
    elif "diamonds" in config.stem or "rating" in config.stem:
        assert "val_rmse" in last_metrics(run)
        assert (run / "predicted_vs_actual.png").is_file()
    else:
        assert "val_auroc" in last_metrics(run)
        assert (run / "confusion_matrix.png").is_file()


def test_print_config_round_trips(
    config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config_file), "--model.init_args.lr", "0.5", "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["init_args"]["lr"] == 0.5
    assert "num_features" not in printed["model"]["init_args"]  # linked from the data, never typed
    assert printed["last_checkpoint"]["filename"] == "last"
    # what is printed is what runs: the checkpoint's monitor, mode and file name too
    main(["fit", "--config", str(config_file), "--model.init_args.lr", "0.5"])
    (run,) = run_dirs(tmp_path / "runs")
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert printed["checkpoint"] == saved["checkpoint"]
    assert (
        printed["checkpoint"]["monitor"] == "val_auroc" and printed["checkpoint"]["mode"] == "max"
    )
    assert printed["checkpoint"]["filename"] == "best-{epoch:03d}-{val_auroc:.4f}"
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(config_file), "--checkpoint.monitor", "val_loss",
              "--checkpoint.mode", "min", "--print_config"])  # fmt: skip
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["checkpoint"]["monitor"] == "val_loss" and printed["checkpoint"]["mode"] == "min"


def test_link_is_skipped_for_a_model_without_the_argument(
    csv_file: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent / "helpers"))
    config = write_config(tmp_path / "c.yaml", csv_file, tmp_path / "runs", max_epochs=2)
    main(
        [
            "fit",
            "--config",
            str(config),
            "--model",
            "tiny_models.LazyWidthNet",
            "--model.init_args.lr",
            "0.01",
        ]
    )
    (run,) = run_dirs(tmp_path / "runs")
    assert last_metrics(run)["val_auroc"] > 0.7


def test_data_errors_reach_the_user(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", tmp_path / "missing.csv", tmp_path / "runs")
    with pytest.raises(FileNotFoundError, match=r"training CSV not found: .*missing\.csv"):
        main(["fit", "--config", str(config)])


def test_early_stopping_from_config(config_file: Path, tmp_path: Path) -> None:
    stopper = {"monitor": "val_loss", "patience": 1, "min_delta": 10}
    callbacks = json.dumps([{"class_path": "EarlyStopping", "init_args": stopper}])
    main(
        [
            "fit",
            "--config",
            str(config_file),
            "--trainer.max_epochs",
            "20",
            "--trainer.callbacks",
            callbacks,
        ]
    )
    (run,) = run_dirs(tmp_path / "runs")
    assert last_metrics(run)["epoch"] == 1  # stopped after patience=1 epoch without improvement


def test_bf16_mixed_from_the_cli(config_file: Path, tmp_path: Path) -> None:
    main(["fit", "--config", str(config_file), "--trainer.precision", "bf16-mixed"])
    (run,) = run_dirs(tmp_path / "runs")
    assert yaml.safe_load((run / "config.yaml").read_text())["trainer"]["precision"] == "bf16-mixed"
    assert last_metrics(run)["val_auroc"] > 0.8


def test_default_loggers_share_the_next_free_version(tmp_path: Path) -> None:
    for name in ("version_0", "version_3", "version_x"):
        (tmp_path / "lightning_logs" / name).mkdir(parents=True)
    loggers = default_loggers(tmp_path)
    assert {type(logger).__name__ for logger in loggers} <= {"CSVLogger", "TensorBoardLogger"}
    assert {Path(logger.log_dir) for logger in loggers} == {
        tmp_path / "lightning_logs" / "version_4"
    }


def test_validate_and_test_subcommands(csv_file: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", csv_file, tmp_path / "runs", max_epochs=2)
    split = ["--data.init_args.test_fraction", "0.2"]
    main(["fit", "--config", str(config), *split])
    last = run_dirs(tmp_path / "runs")[0] / "checkpoints" / "last.ckpt"
    main(["validate", "--config", str(config), *split, "--ckpt_path", str(last)])
    main(["test", "--config", str(config), *split, "--ckpt_path", str(last)])
    (fitted,) = run_dirs(tmp_path / "runs")  # the training run folder got nothing new
    (validated,) = run_dirs(tmp_path / "runs", "validate")
    (tested,) = run_dirs(tmp_path / "runs", "test")
    assert sorted(p.name for p in (fitted / "checkpoints").iterdir()) == sorted(
        p.name for p in last.parent.iterdir()
    )
    assert last_metrics(validated)["val_auroc"] == pytest.approx(last_metrics(fitted)["val_auroc"])
    test_metrics = last_metrics(tested)
    assert {f"test_{m}" for m in ("loss", "acc", "precision", "recall", "f1", "auroc")} <= set(
        test_metrics
    )
    assert test_metrics["test_auroc"] > 0.8


class Payload:
    """Stands for whatever a malicious checkpoint would run when unpickled."""


def test_checkpoint_with_arbitrary_objects_is_refused(config_file: Path, tmp_path: Path) -> None:
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"x": Payload()}}, evil)
    with pytest.raises(pickle.UnpicklingError, match="weights_only"):
        main(["validate", "--config", str(config_file), "--ckpt_path", str(evil)])
    with pytest.raises(pickle.UnpicklingError):
        TabularDataModule.from_checkpoint(evil)
    with pytest.raises(pickle.UnpicklingError):
        FeedForwardNet.load_from_checkpoint(evil, weights_only=True)


def test_checkpoint_url_is_not_unpickled_by_default(
    config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Lightning's own default for http(s) checkpoints is weights_only=False; dlzoo's is True.
    torch.save({"state_dict": {}, "hyper_parameters": {"x": Payload()}}, tmp_path / "evil.ckpt")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/evil.ckpt"
        with pytest.raises(pickle.UnpicklingError, match="weights_only"):
            main(["validate", "--config", str(config_file), "--ckpt_path", url])
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("subcommand", ["validate", "test", "predict"])
def test_evaluating_without_a_checkpoint_is_refused(subcommand: str, config_file: Path) -> None:
    with pytest.raises(ValueError, match=f"dlzoo {subcommand} needs --ckpt_path"):
        main([subcommand, "--config", str(config_file)])


def test_text_fit_then_predict_raw_reviews(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DLZOO_DATA", str(tmp_path / "cache"))
    data = write_acl_imdb(tmp_path / "imdb", per_class=60)
    config = REPO / "examples" / "configs" / "imdb_improved_rnn_cpu.yaml"
    common = ["--data.init_args.data_dir", str(data), "--data.init_args.url", "null"]
    # a tiny fastText file of the config's width (100): the DataModule aligns it to its
    # vocabulary and the CLI links the aligned file into the model
    vectors = tmp_path / "tiny.vec"
    rows = "".join(f"{w} " + " ".join(["0.5"] * 100) + "\n" for w in ("great", "awful"))
    vectors.write_text("2 100\n" + rows)
    common += ["--data.init_args.vectors", str(vectors)]
    main(
        [
            "fit",
            "--config",
            str(config),
            "--trainer.default_root_dir",
            str(tmp_path / "runs"),
            "--trainer.max_epochs",
            "3",
            "--trainer.enable_progress_bar",
            "false",
            *common,
        ]
    )
    (run,) = run_dirs(tmp_path / "runs")
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    linked = ckpt["hyper_parameters"]  # linked by the CLI from the DataModule
    aligned = torch.load(linked["pretrained_embeddings"], weights_only=True)
    assert aligned.shape == (linked["vocab_size"], 100) and int((aligned != 0).any(1).sum()) == 2
    raw = tmp_path / "new.csv"
    reviews = ["Wonderful, moving and brilliant.", "", "A dull, boring mess<br />awful."]
    pd.DataFrame({"text": reviews}).to_csv(raw, index=False)
    last = run / "checkpoints" / "last.ckpt"
    # in this process: a fresh process predicting text from the checkpoint alone is
    # test_predict_from_the_checkpoint_alone_in_a_fresh_folder
    monkeypatch.chdir(tmp_path)
    main(
        [
            "predict",
            "--config",
            str(run / "config.yaml"),
            "--ckpt_path",
            str(last),
            "--data.init_args.predict_file",
            str(raw),
        ]
    )
    table = pd.read_csv(tmp_path / "runs" / "predictions.csv")
    assert list(table.columns) == ["row", "prob_1", "label"] and table["row"].tolist() == [0, 1, 2]
    # the same numbers as a reload by hand, from the checkpoint alone
    model = ImprovedRNN.load_from_checkpoint(last, weights_only=True).eval()
    dm = IMDBDataModule.from_checkpoint(last)
    dataset = dm.encode_texts(reviews)
    (inputs,) = dm._collate([dataset[i] for i in range(len(dataset))])
    expected = model.predict_proba(inputs).detach()
    torch.testing.assert_close(
        torch.tensor(table["prob_1"].to_numpy()).float(), expected, atol=1e-6, rtol=0
    )
    assert ((table["prob_1"] >= 0.5) == (table["label"] == 1)).all()


def _fitted_checkpoint(config_file: Path, tmp_path: Path) -> Path:
    main(["fit", "--config", str(config_file), "--trainer.max_epochs", "1"])
    return run_dirs(tmp_path / "runs")[0] / "checkpoints" / "last.ckpt"


def test_checkpoint_naming_a_foreign_class_is_not_imported(
    config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    last = _fitted_checkpoint(config_file, tmp_path)
    checkpoint = torch.load(last, weights_only=True)
    checkpoint["hyper_parameters"]["_class_path"] = "planted.Planted"  # weights-only safe
    torch.save(checkpoint, tmp_path / "planted.ckpt")
    monkeypatch.syspath_prepend(str(HELPERS))
    monkeypatch.setenv("PLANTED_MARK", str(tmp_path / "mark"))
    with pytest.raises(ValueError, match=r"'planted.Planted', which is neither a dlzoo model"):
        main(
            [
                "validate",
                "--config",
                str(config_file),
                "--ckpt_path",
                str(tmp_path / "planted.ckpt"),
            ]
        )
    assert not (tmp_path / "mark").exists()  # nothing of it ran


def test_weights_only_false_is_honoured(config_file: Path, tmp_path: Path) -> None:
    last = _fitted_checkpoint(config_file, tmp_path)
    checkpoint = torch.load(last, weights_only=True)
    checkpoint["note"] = Payload()  # an object only full unpickling can restore
    torch.save(checkpoint, tmp_path / "trusted.ckpt")
    args = ["validate", "--config", str(config_file), "--ckpt_path", str(tmp_path / "trusted.ckpt")]
    with pytest.raises(pickle.UnpicklingError, match="weights_only"):
        main(args)
    main([*args, "--weights_only", "false"])  # the user vouches for the file: it loads
    assert "val_auroc" in last_metrics(run_dirs(tmp_path / "runs", "validate")[-1])


def test_checkpoints_are_written_atomically(
    tmp_path: Path, config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli = make_cli(["--config", str(config_file)], run=False)
    io = cli.trainer.strategy.checkpoint_io
    assert isinstance(io, AtomicCheckpointIO)
    target = tmp_path / "ckpts" / "best.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, target)
    good = target.read_bytes()

    def disk_full(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, target)
    assert target.read_bytes() == good  # the previous checkpoint is untouched
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint({"state_dict": {}}, tmp_path / "ckpts" / "new.ckpt")
    assert sorted(p.name for p in target.parent.iterdir()) == ["best.ckpt"]  # no partial file


def test_predict_restores_preprocessing_and_refuses_options_that_change_the_input(
    config_file: Path, tmp_path: Path, csv_file: Path
) -> None:
    last = _fitted_checkpoint(config_file, tmp_path)
    run = last.parents[1]
    raw = make_frame(n=6, seed=9).drop(columns="target")
    raw.loc[2, "x1"] = None  # an empty cell in a new row
    raw.to_csv(tmp_path / "new.csv", index=False)
    csv_file.unlink()  # the training CSV is gone: nothing is re-fitted
    args = ["predict", "--config", str(run / "config.yaml"), "--ckpt_path", str(last)]
    args += ["--data.init_args.predict_file", str(tmp_path / "new.csv")]
    out = ["--prediction_writer.output", str(tmp_path / "p.csv")]
    with pytest.raises(ValueError, match=r"column 'x1' has 1 empty value"):
        main([*args, *out])
    main([*args, *out, "--data.init_args.missing_values", "impute"])  # only concerns new rows
    assert len(pd.read_csv(tmp_path / "p.csv")) == 6
    with pytest.raises(ValueError, match=r"drop_columns=\['x2'\] \(the checkpoint's model was"):
        main([*args, *out, "--data.init_args.drop_columns", "[x2]"])


@pytest.mark.slow  # a sweep over every family/recipe, or dlzoo in a subprocess
def test_registered_names_class_names_and_paths_all_work(csv_file: Path, tmp_path: Path) -> None:
    data = ["--data.init_args.filename", str(csv_file), "--data.init_args.target", "target"]
    common = ["--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false", *data]
    for i, (model, dm) in enumerate(
        [
            ("ffn", "tabular"),
            ("FeedForwardNet", "TabularDataModule"),
            ("dlzoo.models.FeedForwardNet", "dlzoo.data.tabular.TabularDataModule"),
        ]
    ):
        root = ["--trainer.default_root_dir", str(tmp_path / f"runs{i}")]
        main(["fit", "--model", model, f"--data={dm}", *common, *root])
        saved = yaml.safe_load((run_dirs(tmp_path / f"runs{i}")[0] / "config.yaml").read_text())
        assert saved["model"]["class_path"] == "dlzoo.models.ffn.FeedForwardNet"
    config = tmp_path / "short.yaml"
    config.write_text(yaml.safe_dump({"model": "ffn", "data": {"class_path": "tabular"}}))
    main(
        ["fit", "--config", str(config), *common, "--trainer.default_root_dir", str(tmp_path / "y")]
    )
    assert (run_dirs(tmp_path / "y")[0] / "checkpoints" / "last.ckpt").is_file()


YOUR_NETWORK = """
import torch
from torch import nn

from dlzoo.models.base import TaskModule


class WideFFN(TaskModule):
    def __init__(self, num_features: int, width: int = 512, **kwargs) -> None:
        super().__init__(**kwargs)
        self.net = nn.Sequential(
            nn.Linear(num_features, width), nn.ReLU(), nn.Linear(width, self.num_outputs)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
"""


def test_a_network_of_your_own_trains_and_exports_through_the_command(
    csv_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # README's example: one class on TaskModule, given to the command by its import path
    (tmp_path / "my_networks.py").write_text(YOUR_NETWORK)
    monkeypatch.syspath_prepend(str(tmp_path))
    args = ["fit", "--seed_everything", "7", "--model", "my_networks.WideFFN"]
    args += ["--model.init_args.width", "16", "--model.init_args.lr", "0.01"]
    args += ["--data=tabular", "--data.init_args.filename", str(csv_file)]
    args += ["--data.init_args.target", "target", "--data.init_args.batch_size", "32"]
    args += ["--trainer.max_epochs", "3"]
    args += ["--trainer.enable_progress_bar", "false"]
    main([*args, "--trainer.default_root_dir", str(tmp_path / "runs")])
    (run,) = run_dirs(tmp_path / "runs")
    assert last_metrics(run)["val_auroc"] > 0.8  # the task's metrics, from the base
    saved = yaml.safe_load((run / "config.yaml").read_text())["model"]
    assert saved["class_path"] == "my_networks.WideFFN"
    config, ckpt = str(run / "config.yaml"), str(run / "checkpoints" / "last.ckpt")
    main(["export", "--config", config, "--ckpt_path", ckpt, "--output", str(tmp_path / "b")])
    bundle = json.loads((tmp_path / "b" / "dlzoo-bundle.json").read_text())
    assert bundle["task"] == "binary" and bundle["model"]["class"] == "my_networks.WideFFN"
    sizes = TabularDataModule(filename=str(csv_file), target="target")
    hyperparameters = bundle["model"]["hyperparameters"]
    assert hyperparameters["num_features"] == sizes.num_features  # linked, not typed


def test_help_lists_registered_models_and_datamodules(capsys: pytest.CaptureFixture) -> None:
    for args in (["--help"], ["fit", "--help"]):
        with pytest.raises(SystemExit):
            main(args)
        shown = capsys.readouterr().out
        assert "  ffn             FeedForwardNet: " in shown
        assert "  text_csv        TextClassificationDataModule: " in shown
        assert "  ffn             FeedForwardNet: A FeedForwardNetwork for a task" in shown
        listing = shown[shown.index("models:") : shown.index("recipes:")]
        assert ":class:" not in listing and "``" not in listing  # markup is not for a terminal
        if args == ["--help"]:  # without a subcommand first, every subcommand is listed
            assert "{fit,validate,test,predict,export,serve}" in shown


@pytest.mark.parametrize(
    ("option", "name", "shown"),
    [
        ("--model.help", "ffn", "--model.hidden_sizes"),
        ("--model.help", "TransformerClassifier", "--model.num_heads"),
        ("--data.help", "tabular", "--data.log_target"),
    ],
)
def test_the_help_of_one_model_or_datamodule_takes_its_registered_name(
    option: str, name: str, shown: str, capsys: pytest.CaptureFixture
) -> None:
    """``--model ffn`` takes a registered name, so LightningCLI's ``--model.help`` does too."""
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", option, name])
    captured = capsys.readouterr()
    assert exit_info.value.code == 0, captured.err
    assert shown in captured.out


def test_a_mistyped_subcommand_is_named_with_the_choices(capsys: pytest.CaptureFixture) -> None:
    # only the parser of the subcommand that runs is built: a name that is none of them still
    # gets jsonargparse's message with every choice
    with pytest.raises(SystemExit) as exit_info:
        main(["fitt", "--trainer.max_epochs", "1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "fitt" in err and "fit" in err and "serve" in err


def test_a_data_error_is_one_message_without_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    # main() without arguments is the dlzoo command (the console script calls exactly that)
    config = write_config(tmp_path / "c.yaml", tmp_path / "missing.csv", tmp_path / "runs")
    monkeypatch.setattr(sys, "argv", ["dlzoo", "fit", "--config", str(config)])
    monkeypatch.delenv("DLZOO_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "dlzoo: error: training CSV not found:" in err and "DLZOO_TRACEBACK=1" in err
    monkeypatch.setenv("DLZOO_TRACEBACK", "1")  # asked for: the exception and its traceback
    with pytest.raises(FileNotFoundError, match="training CSV not found"):
        main()
