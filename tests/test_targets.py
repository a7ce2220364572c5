"""Tasks decided by the data: inference and override, regression targets in their own units at
every output, multi-target regression and multi-label classification, bad targets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import f1_score, hamming_loss, mean_absolute_error, r2_score

from conftest import make_frame, run_dirs
from dlzoo.cli import main
from dlzoo.data import TabularDataModule
from dlzoo.data.targets import encode_targets, fit_targets, infer_task
from dlzoo.deploy.export import export_model
from dlzoo.deploy.serve import PredictionAPI, _Raw
from dlzoo.models import FeedForwardNet
from dlzoo.tasks import TASKS, untransform


def houses(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """Rows whose price (dollars, skewed) and size follow the features, plus noise."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.uniform(0, 10, size=n)
    color = rng.choice(["red", "green", "blue"], size=n)
    price = np.exp(6 + 0.8 * x1 + 0.1 * x2 + 0.5 * (color == "red") + rng.normal(0, 0.1, n))
    size = 50 + 10 * x1 + 3 * x2 + rng.normal(0, 1, n)
    frame = pd.DataFrame({"x1": x1.round(3), "x2": x2.round(2), "color": color})
    return frame.assign(price=price.round(0).astype(int), size=size.round(2))


def movies(n: int = 300, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(size=n)
    lists = [
        "|".join(g for g, on in (("drama", x > 0), ("comedy", y > 0.3), ("war", x + y < -1)) if on)
        or "short"
        for x, y in zip(a, b, strict=True)
    ]
    return pd.DataFrame({"a": a.round(3), "b": b.round(3), "genres": lists})


# ---------------------------------------------------------------------------- inference
@pytest.mark.parametrize(
    ("values", "task"),
    [
        (["yes", "no", "no", "yes"], "binary"),
        ([True, False, True, True], "binary"),
        (["a", "b", "c", "a"], "multiclass"),
        ([0, 1, 1, 0], "binary"),
        ([1, 2, 3, 3], "multiclass"),
        ([1.5, 2.25, 3.0, 7.1], "regression"),
        (list(range(100, 4000, 10)), "regression"),
        (["drama|comedy", "drama", "war", "comedy"], "multilabel"),
    ],
)
def test_the_task_is_inferred_from_the_target(values: list, task: str) -> None:
    frame = pd.DataFrame({"y": values})
    assert infer_task(frame, ["y"], "|")[0] == task


def test_several_target_columns_are_multi_target_or_multi_label() -> None:
    frame = pd.DataFrame({"a": [0, 1, 1], "b": [1, 1, 0], "c": [1.5, 2.0, 3.5]})
    assert infer_task(frame, ["a", "b"], "|")[0] == "multilabel"
    assert infer_task(frame, ["a", "c"], "|")[0] == "regression"
    with pytest.raises(ValueError, match="mix kinds"):
        infer_task(frame.assign(d=["x", "y", "z"]), ["a", "d"], "|")


def test_integer_ratings_are_ambiguous_and_task_decides(tmp_path: Path) -> None:
    frame = make_frame(n=200).assign(rating=np.arange(200) % 10 + 1)
    frame.drop(columns="target").to_csv(tmp_path / "ratings.csv", index=False)
    dm = TabularDataModule(filename=str(tmp_path / "ratings.csv"), target="rating")
    with pytest.raises(ValueError) as caught:
        dm.num_features
    message = str(caught.value)
    assert "10 distinct integers (1 to 10)" in message
    assert "task: multiclass" in message and "task: regression" in message
    forced = TabularDataModule(
        filename=str(tmp_path / "ratings.csv"), target="rating", task="regression"
    )
    assert forced.task == "regression" and forced.num_classes is None
    assert (
        TabularDataModule(
            filename=str(tmp_path / "ratings.csv"), target="rating", task="multiclass"
        ).num_classes
        == 10
    )


def test_the_decision_is_logged_once_with_its_reason(tmp_path: Path, caplog) -> None:
    houses().to_csv(tmp_path / "houses.csv", index=False)
    dm = TabularDataModule(filename=str(tmp_path / "houses.csv"), target="price")
    with caplog.at_level("INFO", logger="dlzoo.data.tabular"):
        dm.setup("fit")
        dm.setup("fit")
    lines = [r.message for r in caplog.records if r.message.startswith("task:")]
    assert lines == [lines[0]] and "regression" in lines[0] and "'price'" in lines[0]


def test_an_unseen_class_error_is_short_and_hints_at_regression(tmp_path: Path) -> None:
    train = houses()
    train.to_csv(tmp_path / "houses.csv", index=False)
    dm = TabularDataModule(filename=str(tmp_path / "houses.csv"), target="price", task="multiclass")
    with pytest.raises(ValueError) as caught:
        dm.setup("fit")  # prices as classes: the validation split has prices training lacks
    message = str(caught.value)
    assert len(message) < 400 and "in all)" in message and "task: regression" in message
    assert "np." not in message


# ----------------------------------------------------------------------- target scaling
@pytest.mark.parametrize("log_target", [False, True])
def test_target_scaling_is_inverted_exactly(log_target: bool) -> None:
    frame = houses()
    state = fit_targets(frame, ["price", "size"], "regression", log_target=log_target)
    scaled = encode_targets(frame, state, "rows", str)
    assert scaled.shape == (300, 2) and abs(float(scaled.mean())) < 1e-5
    back = untransform(scaled, state["transform"])
    expected = torch.tensor(frame[["price", "size"]].to_numpy(np.float64), dtype=torch.float32)
    torch.testing.assert_close(back, expected, rtol=1e-5, atol=1e-3)


def test_regression_metrics_equal_a_hand_computation() -> None:
    rng = np.random.default_rng(0)
    actual = rng.uniform(100, 1000, size=(50, 1))
    predicted = actual + rng.normal(0, 30, size=(50, 1))
    task = TASKS["regression"]
    metrics = task.metrics({"num_targets": 1})
    metrics.update(torch.tensor(predicted), torch.tensor(actual))
    got = {k: float(v) for k, v in metrics.compute().items()}
    error = predicted - actual
    assert got["mse"] == pytest.approx(float((error**2).mean()), rel=1e-5)
    assert got["rmse"] == pytest.approx(float(np.sqrt((error**2).mean())), rel=1e-5)
    assert got["mae"] == pytest.approx(mean_absolute_error(actual, predicted), rel=1e-5)
    assert got["mape"] == pytest.approx(float(np.mean(np.abs(error) / actual)), rel=1e-5)
    assert got["r2"] == pytest.approx(r2_score(actual, predicted), rel=1e-5)


def test_multi_target_metrics_are_per_target_and_averaged() -> None:
    task = TASKS["regression"]
    metrics = task.metrics({"num_targets": 2, "target_names": ["price", "size"]})
    predicted, actual = torch.tensor([[1.0, 10.0], [3.0, 12.0]]), torch.tensor([[2.0, 10.0]] * 2)
    metrics.update(predicted, actual)
    got = {k: float(v) for k, v in metrics.compute().items()}
    assert got["mae_price"] == 1.0 and got["mae_size"] == 1.0 and got["mae"] == 1.0
    assert got["rmse"] == pytest.approx((1.0 + np.sqrt(2.0)) / 2)


def test_multilabel_metrics_threshold_and_decoding() -> None:
    rng = np.random.default_rng(1)
    target = rng.integers(0, 2, size=(40, 3))
    probs = np.clip(target * 0.6 + rng.uniform(0, 0.5, size=(40, 3)), 0, 1)
    task = TASKS["multilabel"]
    metrics = task.metrics({"num_classes": 3, "threshold": 0.4})
    metrics.update(torch.tensor(probs), torch.tensor(target))
    got = {k: float(v) for k, v in metrics.compute().items()}
    chosen = (probs >= 0.4).astype(int)
    assert got["hamming"] == pytest.approx(hamming_loss(target, chosen), rel=1e-5)
    assert got["f1_micro"] == pytest.approx(f1_score(target, chosen, average="micro"), rel=1e-5)
    assert got["f1_macro"] == pytest.approx(f1_score(target, chosen, average="macro"), rel=1e-5)
    logits = torch.logit(torch.tensor([[0.9, 0.35, 0.1]]))
    for threshold, labels in ((0.5, ["drama"]), (0.3, ["drama", "comedy"])):
        out = task.outputs(logits, {"threshold": threshold})
        (row,) = task.decode(out, ["drama", "comedy", "war"])
        assert row["labels"] == labels and row["probabilities"]["war"] == pytest.approx(0.1)


# --------------------------------------------------------------------- through dlzoo fit
def _predict(run: Path, rows: Path, output: Path) -> None:
    checkpoint = str(run / "checkpoints" / "last.ckpt")
    files = ["--data.init_args.predict_file", str(rows), "--prediction_writer.output", str(output)]
    main(["predict", "--config", str(run / "config.yaml"), "--ckpt_path", checkpoint, *files])


def _fit(tmp_path: Path, csv: Path, target: str, *extra: str) -> Path:
    main(
        [
            "fit",
            "--model",
            "ffn",
            "--model.hidden_sizes",
            "[32]",
            "--model.lr",
            "0.01",
            "--data",
            "tabular",
            "--data.filename",
            str(csv),
            "--data.target",
            target,
            "--trainer.max_epochs",
            "8",
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.default_root_dir",
            str(tmp_path / "runs"),
            *extra,
        ]
    )
    (run,) = run_dirs(tmp_path / "runs")
    return run


def test_regression_fit_predict_in_the_targets_units(tmp_path: Path) -> None:
    houses().to_csv(tmp_path / "houses.csv", index=False)
    run = _fit(tmp_path, tmp_path / "houses.csv", "price", "--data.log_target", "true")
    best = [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("best")]
    assert len(best) == 1 and "val_rmse=" in best[0]  # the task's monitor
    metrics = pd.read_csv(run / "metrics.csv")
    rmse = metrics["val_rmse"].dropna().tolist()
    assert rmse[-1] < rmse[0] and metrics["val_r2"].dropna().iloc[-1] > 0.5
    assert {"predicted_vs_actual.png", "residuals.png"} <= {p.name for p in run.iterdir()}

    new = houses(20, seed=5)
    new.drop(columns=["price"]).to_csv(tmp_path / "new.csv", index=False)
    main(
        [
            "predict",
            "--config",
            str(run / "config.yaml"),
            "--ckpt_path",
            str(run / "checkpoints" / "last.ckpt"),
            "--data.init_args.predict_file",
            str(tmp_path / "new.csv"),
            "--prediction_writer.output",
            str(tmp_path / "predicted.csv"),
        ]
    )
    predicted = pd.read_csv(tmp_path / "predicted.csv")
    assert list(predicted.columns) == ["row", "prediction"]
    relative = np.abs(predicted["prediction"] - new["price"]) / new["price"]
    assert relative.median() < 0.5  # dollars, not standardised log-dollars


def test_multi_target_regression_and_multilabel_through_the_cli(tmp_path: Path) -> None:
    houses().drop(columns="price").assign(rooms=lambda f: f["size"] / 10).to_csv(
        tmp_path / "two.csv", index=False
    )
    run = _fit(tmp_path / "two", tmp_path / "two.csv", "[size, rooms]")
    last = pd.read_csv(run / "metrics.csv").ffill().iloc[-1]
    assert {"val_rmse", "val_rmse_size", "val_rmse_rooms", "val_r2_size"} <= set(last.index)
    assert last["val_rmse_size"] > last["val_rmse_rooms"]  # each in its own units

    movies().to_csv(tmp_path / "movies.csv", index=False)
    run = _fit(tmp_path / "ml", tmp_path / "movies.csv", "genres")
    last = pd.read_csv(run / "metrics.csv").ffill().iloc[-1]
    assert last["val_auroc"] > 0.8 and {"val_f1_macro", "val_hamming"} <= set(last.index)
    movies(4, seed=8).drop(columns="genres").to_csv(tmp_path / "m.csv", index=False)
    main(
        [
            "predict",
            "--config",
            str(run / "config.yaml"),
            "--ckpt_path",
            str(run / "checkpoints" / "last.ckpt"),
            "--data.init_args.predict_file",
            str(tmp_path / "m.csv"),
            "--prediction_writer.output",
            str(tmp_path / "labels.csv"),
        ]
    )
    predicted = pd.read_csv(tmp_path / "labels.csv")
    assert list(predicted.columns) == [
        "row", "prob_comedy", "prob_drama", "prob_short", "prob_war", "labels",
    ]  # fmt: skip


def test_a_regression_run_resumes(tmp_path: Path) -> None:
    houses().to_csv(tmp_path / "houses.csv", index=False)
    run = _fit(tmp_path, tmp_path / "houses.csv", "price", "--trainer.max_epochs", "2")
    main(
        [
            "fit",
            "--config",
            str(run / "config.yaml"),
            "--trainer.max_epochs",
            "4",
            "--ckpt_path",
            str(run / "checkpoints" / "last.ckpt"),
        ]
    )
    resumed = run_dirs(tmp_path / "runs")[-1]
    epochs = pd.read_csv(resumed / "metrics.csv")["epoch"].dropna().astype(int)
    assert set(epochs) == {2, 3}


# --------------------------------------------------------------- export and serve answers
@pytest.mark.parametrize("target", ["price", "genres"])
def test_export_parity_and_served_answers(target: str, tmp_path: Path) -> None:
    frame = houses() if target == "price" else movies()
    frame.to_csv(tmp_path / "rows.csv", index=False)
    dm = TabularDataModule(filename=str(tmp_path / "rows.csv"), target=target)
    torch.manual_seed(0)
    model = FeedForwardNet(
        num_features=dm.num_features,
        num_classes=dm.num_classes or 2,
        task=dm.task,
        num_targets=dm.num_targets or 1,
        target_transform=dm.target_transform,
        hidden_sizes=[8],
    )
    bundle = json.loads(export_model(model, dm, tmp_path / "bundle").read_text())
    assert bundle["task"] == dm.task and bundle["parity"]["max_abs_diff"] <= 1e-5
    assert bundle["outputs"][0]["name"] == ("prediction" if target == "price" else "probabilities")

    rows = frame.drop(columns=[target]).head(3).to_dict("records")
    api = PredictionAPI(model, dm)
    (answer,) = api.predict([_Raw(rows)])
    expected = model.eval().predict_step(
        (dm.preprocessor.collate(dm.preprocessor.encode(rows)),), 0
    )
    if target == "price":
        values = [row["prediction"] for row in answer]
        np.testing.assert_allclose(values, expected["prediction"].reshape(-1).tolist(), rtol=1e-6)
        assert min(values) > 10 or max(values) > 10  # dollars, not standardised values
    else:
        assert set(answer[0]) == {"labels", "probabilities"}
        assert set(answer[0]["probabilities"]) == set(dm.classes)


# ------------------------------------------------------------------------------ bad targets
@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("", "target 'price' is empty on line"),
        ("inf", "is infinite on line"),
        ("cheap", "is not a number on line"),
    ],
)
def test_bad_regression_targets_are_refused_before_training(
    cell: str, message: str, tmp_path: Path
) -> None:
    frame = houses().astype({"price": object})
    frame.loc[7, "price"] = cell
    frame.to_csv(tmp_path / "bad.csv", index=False)
    dm = TabularDataModule(filename=str(tmp_path / "bad.csv"), target="price", task="regression")
    with pytest.raises(ValueError, match=message):
        dm.setup("fit")


def test_a_label_never_seen_in_training_is_refused_at_predict(tmp_path: Path) -> None:
    movies().to_csv(tmp_path / "movies.csv", index=False)
    dm = TabularDataModule(filename=str(tmp_path / "movies.csv"), target="genres")
    dm.setup("fit")
    new = movies(3, seed=3).assign(genres="drama|western")
    with pytest.raises(
        ValueError, match=r"label 'western' on line\(s\) 2 was never seen in training"
    ):
        dm.transform(new, "new rows")


# ----------------------------------------------------------------------------- text targets
def _text_fit(tmp_path: Path, data: list[str], model: str = "rnn", epochs: int = 3) -> Path:
    sizes = ["--model.embedding_dim", "16"]
    sizes += [] if model == "transformer" else ["--model.hidden_size", "16"]
    data = [*data, "--data.tokenizer", "simple", "--data.cache_dir", str(tmp_path / "cache")]
    trainer = ["--trainer.max_epochs", str(epochs), "--trainer.enable_progress_bar", "false"]
    trainer += ["--trainer.default_root_dir", str(tmp_path / "runs")]
    main(["fit", "--model", model, *sizes, "--model.lr", "0.01", *data, *trainer])
    (run,) = run_dirs(tmp_path / "runs")
    return run


def test_imdb_star_ratings_as_regression(tmp_path: Path) -> None:
    from conftest import write_acl_imdb

    write_acl_imdb(tmp_path / "imdb", per_class=30)
    for i, path in enumerate(sorted((tmp_path / "imdb").rglob("*.txt"))):
        positive = path.parent.name == "pos"
        rating = (7 + i % 4) if positive else (1 + i % 4)  # 7-10 and 1-4 stars
        path.rename(path.with_name(f"{path.stem.split('_')[0]}_{rating}.txt"))
    data = ["--data", "imdb", "--data.data_dir", str(tmp_path / "imdb")]
    data += ["--data.label", "rating", "--data.task", "regression", "--data.batch_size", "16"]
    run = _text_fit(tmp_path, data, "transformer", epochs=8)
    rmse = pd.read_csv(run / "metrics.csv")["val_rmse"].dropna().tolist()
    assert rmse[-1] < min(rmse[0], 2.5)  # in stars: the mean rating alone is off by about 3.3
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["IMDBDataModule"]["targets"]["task"] == "regression"
    assert saved["hyper_parameters"]["task"] == "regression"


def test_text_label_lists_are_multilabel_and_predicted_as_sets(tmp_path: Path) -> None:
    from conftest import make_reviews

    reviews = make_reviews(160)
    reviews["label"] = [
        "|".join(t for t, on in (("pos", y == 1), ("long", len(x) > 90)) if on) or "neg"
        for x, y in zip(reviews["text"], reviews["label"], strict=True)
    ]
    reviews.to_csv(tmp_path / "tagged.csv", index=False)
    data = ["--data", "text_csv", "--data.train_file", str(tmp_path / "tagged.csv")]
    run = _text_fit(tmp_path, data, "transformer")
    assert "val_f1_macro" in pd.read_csv(run / "metrics.csv").columns
    make_reviews(4, seed=7)[["text"]].to_csv(tmp_path / "new.csv", index=False)
    main(
        [
            "predict",
            "--config",
            str(run / "config.yaml"),
            "--ckpt_path",
            str(run / "checkpoints" / "last.ckpt"),
            "--data.init_args.predict_file",
            str(tmp_path / "new.csv"),
            "--prediction_writer.output",
            str(tmp_path / "tags.csv"),
        ]
    )
    predicted = pd.read_csv(tmp_path / "tags.csv")
    assert list(predicted.columns) == ["row", "prob_long", "prob_neg", "prob_pos", "labels"]
    assert len(predicted) == 4


@pytest.mark.parametrize("model", ["rnn", "improved_rnn", "transformer"])
@pytest.mark.parametrize("task", ["regression", "multilabel"])
@pytest.mark.slow  # a sweep over every family/recipe, or dlzoo in a subprocess
def test_every_text_model_fits_and_predicts_each_task(model: str, task: str, tmp_path: Path):
    from conftest import make_reviews

    reviews = make_reviews(60)
    if task == "regression":
        reviews["label"] = [8.5 if y else 2.0 for y in reviews["label"]]
    else:
        reviews["label"] = ["pos|film" if y else "neg|film" for y in reviews["label"]]
    reviews.to_csv(tmp_path / "train.csv", index=False)
    data = ["--data", "text_csv", "--data.train_file", str(tmp_path / "train.csv")]
    data += ["--data.task", task]
    run = _text_fit(tmp_path, data, model, epochs=1)
    make_reviews(3, seed=7)[["text"]].to_csv(tmp_path / "new.csv", index=False)
    _predict(run, tmp_path / "new.csv", tmp_path / "out.csv")
    predicted = pd.read_csv(tmp_path / "out.csv")
    if task == "regression":
        assert list(predicted.columns) == ["row", "prediction"]
        assert predicted["prediction"].between(-5, 15).all()  # stars, not standardised
    else:
        assert list(predicted.columns) == ["row", "prob_film", "prob_neg", "prob_pos", "labels"]


# ---------------------------------------------------------------------------- image targets
def _image_table(root: Path) -> pd.DataFrame:
    """Images listed in a CSV: a colour label list, and a number (redness) per image."""
    from conftest import write_jpeg

    rows = []
    for i in range(24):
        red, blue = i % 2 == 0, i % 3 == 0
        color = (200 if red else 40, 60, 200 if blue else 40)
        write_jpeg(root / "pics" / f"{i}.jpg", color, (20 + i % 5, 18), i)
        tags = "|".join(t for t, on in (("red", red), ("blue", blue)) if on) or "dark"
        rows.append((f"pics/{i}.jpg", tags, color[0] / 10 + i % 3))
    frame = pd.DataFrame(rows, columns=["file", "tags", "redness"])
    frame.to_csv(root / "labels.csv", index=False)
    return frame


@pytest.mark.parametrize("model", ["convnet", "finetune"])
@pytest.mark.parametrize("target", ["tags", "redness"])
@pytest.mark.slow  # a sweep over every family/recipe, or dlzoo in a subprocess
def test_every_image_model_fits_and_predicts_labels_and_numbers(
    model: str, target: str, tmp_path: Path
) -> None:
    _image_table(tmp_path)
    sizes = ["--model.head_sizes", "[8]"]
    if model == "convnet":
        sizes += ["--model.channels", "[4]"]
    else:
        sizes += ["--model.backbone", "timm/test_efficientnet", "--model.weights", "null"]
    data = ["--data", "image_folder", "--data.data_dir", str(tmp_path)]
    data += ["--data.labels_file", "labels.csv", "--data.target", target]
    data += ["--data.image_size", "16", "--data.resize_size", "18", "--data.batch_size", "4"]
    data += ["--data.num_workers", "0", "--data.predict_dir", str(tmp_path / "pics")]
    if target == "redness":
        data += ["--data.task", "regression"]
    trainer = ["--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false"]
    trainer += ["--trainer.default_root_dir", str(tmp_path / "runs")]
    main(["fit", "--model", model, *sizes, *data, *trainer])
    (run,) = run_dirs(tmp_path / "runs")
    metrics = pd.read_csv(run / "metrics.csv").columns
    assert ("val_rmse" if target == "redness" else "val_f1_macro") in metrics
    checkpoint = str(run / "checkpoints" / "last.ckpt")
    output = ["--prediction_writer.output", str(tmp_path / "out.csv")]
    main(["predict", "--config", str(run / "config.yaml"), "--ckpt_path", checkpoint, *output])
    predicted = pd.read_csv(tmp_path / "out.csv")
    assert len(predicted) == 24 and predicted["row"].iloc[0] == "0.jpg"
    if target == "redness":
        assert list(predicted.columns) == ["row", "prediction"]
        assert predicted["prediction"].between(0, 40).all()  # in the target's units
    else:
        assert list(predicted.columns) == ["row", "prob_blue", "prob_dark", "prob_red", "labels"]
