"""TabM (issue 28): every tabular task fits, predicts from the checkpoint alone (the training CSV
gone), exports with parity and serves the same answers; the piecewise-linear bins come from the
training rows and travel in the checkpoint; predictions are the mean of the k members'."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rtdl_num_embeddings
import torch
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader

from conftest import run_dirs
from dlzoo.cli import main
from dlzoo.data import TabularDataModule
from dlzoo.deploy.serve import PredictionAPI, _Raw
from dlzoo.models import TabMNet
from dlzoo.networks.tabm import TabMNetwork, bins_from_quantiles
from dlzoo.tasks import untransform

#: a target per task: yes/no, three classes, label lists, two numbers
TARGETS = {
    "binary": "buy",
    "multiclass": "kind",
    "multilabel": "tags",
    "regression": "[price, size]",
}
TINY = ["--model.k", "4", "--model.d_block", "16", "--model.n_bins", "8"]


def shop(n: int, seed: int = 0) -> pd.DataFrame:
    """Rows with three numeric, a categorical and a yes/no column, and a target of each task
    that the features decide (plus noise)."""
    rng = np.random.default_rng(seed)
    x1, x2, x3 = rng.normal(size=n), rng.uniform(0, 10, size=n), rng.exponential(2.0, size=n)
    color = rng.choice(["red", "green", "blue"], size=n)
    member = rng.choice(["yes", "no"], size=n)
    score = 1.5 * x1 + 0.2 * (x2 - 5) + (color == "red") + rng.normal(0, 0.3, n)
    tags = [
        "|".join(t for t, on in (("sale", a > 0), ("new", b > 5), ("big", c > 2)) if on) or "none"
        for a, b, c in zip(x1, x2, x3, strict=True)
    ]
    return pd.DataFrame(
        {
            "x1": x1.round(4),
            "x2": x2.round(3),
            "x3": x3.round(3),
            "color": color,
            "member": member,
            "buy": np.where(score > 0, "yes", "no"),
            "kind": pd.qcut(score, 3, labels=["low", "mid", "high"]).astype(str),
            "tags": tags,
            "price": np.exp(4 + 0.5 * x1 + 0.05 * x2).round(2),
            "size": (20 + 3 * x2 + x3 + rng.normal(0, 0.5, n)).round(2),
        }
    )


def _fit(root: Path, csv: Path, target: str, *extra: str) -> Path:
    main(
        [
            "fit",
            "--model",
            "tabm",
            *TINY,
            "--data",
            "tabular",
            "--data.filename",
            str(csv),
            "--data.target",
            target,
            "--data.batch_size",
            "32",
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


@pytest.mark.slow  # a fit, a predict and an ONNX export per task (~15 s each)
@pytest.mark.parametrize("task", sorted(TARGETS))
def test_every_tabular_task_fits_predicts_from_the_checkpoint_alone_exports_and_serves(
    task: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = TARGETS[task]
    others = [c for t in TARGETS.values() for c in t.strip("[]").split(", ") if t != target]
    shop(300).drop(columns=others).to_csv(tmp_path / "train.csv", index=False)
    # the multiclass run embeds its categorical column, the others take it one-hot
    extra = ["--model.d_categorical", "4"] if task == "multiclass" else []
    run = _fit(tmp_path, tmp_path / "train.csv", target, *extra)
    metrics = pd.read_csv(run / "metrics.csv")
    monitor = "val_rmse" if task == "regression" else "val_auroc"
    curve = metrics[monitor].dropna().tolist()
    assert (curve[-1] < curve[0]) if task == "regression" else (curve[-1] > 0.75), curve

    (tmp_path / "train.csv").unlink()  # from here on, the checkpoint alone
    monkeypatch.chdir(tmp_path)
    new = shop(9, seed=4)[["x1", "x2", "x3", "color", "member"]]
    new.to_csv(tmp_path / "new.csv", index=False)
    ckpt = str(run / "checkpoints" / "last.ckpt")
    common = ["--config", str(run / "config.yaml"), "--ckpt_path", ckpt]
    predict = ["--data.init_args.predict_file", str(tmp_path / "new.csv")]
    out = ["--prediction_writer.output", str(tmp_path / "predicted.csv")]
    main(["predict", *common, *predict, *out])
    predicted = pd.read_csv(tmp_path / "predicted.csv")
    assert len(predicted) == 9

    # the same numbers by hand from the checkpoint: the members' mean
    model = TabMNet.load_from_checkpoint(ckpt, weights_only=True).eval()
    dm = TabularDataModule.from_checkpoint(ckpt)
    batch = dm.preprocessor.collate(dm.preprocessor.encode(new.to_dict("records")))
    with torch.inference_mode():
        expected = model.predict_step((batch,), 0)
        members = model(batch)
    assert members.shape[:2] == (9, 4)  # k=4 rows of logits per input
    if task == "regression":
        mean = untransform(members, model.hparams.target_transform).mean(dim=1)
        torch.testing.assert_close(expected["prediction"], mean)
        assert list(predicted.columns) == ["row", "prediction_price", "prediction_size"]
        for i, name in enumerate(["price", "size"]):
            np.testing.assert_allclose(predicted[f"prediction_{name}"], mean[:, i], rtol=1e-5)
    else:
        probs = {
            "binary": lambda z: torch.sigmoid(z[..., 0]),
            "multiclass": lambda z: z.softmax(dim=-1),
            "multilabel": torch.sigmoid,
        }[task](members).mean(dim=1)
        torch.testing.assert_close(expected["probs"], probs)

    # the ONNX bundle (TorchScript too: test_export.py) serves the same answers as torch
    main(["export", *common, "--output", str(tmp_path / "bundle")])
    bundle = json.loads((tmp_path / "bundle" / "dlzoo-bundle.json").read_text())
    assert bundle["parity"]["max_abs_diff"] <= 1e-4, bundle["parity"]
    raw = [_Raw(new.to_dict("records"))]
    (answers,) = PredictionAPI.for_bundle(tmp_path / "bundle", threads=1).predict(raw)
    (torch_answers,) = PredictionAPI(model, dm).predict(raw)
    assert len(answers) == 9
    for got, want in zip(answers, torch_answers, strict=True):
        assert got.keys() == want.keys()
        for key, value in want.items():
            # probabilities or values, by name
            if isinstance(value, (dict, float)):
                assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
            else:
                assert got[key] == value, (key, got, want)


def test_bins_are_the_training_quantiles_and_are_restored_without_the_csv(
    tmp_path: Path,
) -> None:
    frame = shop(400).drop(columns=["kind", "tags", "price", "size"])
    frame.to_csv(tmp_path / "train.csv", index=False)
    dm = TabularDataModule(filename=str(tmp_path / "train.csv"), target="buy")
    dm.setup("fit")
    train = dm._split("train").tensors[0][:, :3]  # the standardised numeric columns
    quantiles = dm.numeric_quantiles
    assert len(quantiles) == 3 and all(len(q) == 257 for q in quantiles)
    # rtdl_num_embeddings' own quantile bins of the training rows, for n_bins dividing 256
    for n_bins in (8, 32):
        want = rtdl_num_embeddings.compute_bins(train.double(), n_bins=n_bins)
        for got, edges in zip(bins_from_quantiles(quantiles, n_bins), want, strict=True):
            torch.testing.assert_close(got, edges.float(), rtol=1e-5, atol=1e-5)
    # the validation rows are not in them: the top edge is the training maximum
    assert max(q[-1] for q in quantiles) == pytest.approx(train.max(dim=0).values.max().item())

    model = TabMNet(num_features=dm.num_features, numeric_quantiles=quantiles, k=2, d_block=8)
    trainer = Trainer(logger=False, enable_checkpointing=False, accelerator="cpu")
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    (tmp_path / "train.csv").unlink()
    restored = TabMNet.load_from_checkpoint(tmp_path / "m.ckpt", weights_only=True)
    # in the checkpoint beside the weights, not in the hyperparameters every config parse copies
    assert restored.numeric_quantiles == quantiles and "numeric_quantiles" not in restored.hparams
    for name, buffer in model.network.embeddings.named_buffers():
        torch.testing.assert_close(dict(restored.network.embeddings.named_buffers())[name], buffer)


def test_every_member_differs_and_predict_is_their_mean() -> None:
    torch.manual_seed(0)
    quantiles = [sorted(torch.randn(257).tolist()) for _ in range(2)]
    model = TabMNet(num_features=5, numeric_quantiles=quantiles, k=6, d_block=16).eval()
    x = torch.randn(7, 5)
    with torch.inference_mode():
        members = model(x)
        out = model.predict_outputs(x)
    assert members.shape == (7, 6, 1)
    assert members.std(dim=1).min() > 0  # k different networks, not one copied
    probs = torch.sigmoid(members[..., 0]).mean(dim=1)
    torch.testing.assert_close(out["probs"], probs)
    assert torch.equal(out["preds"], (probs >= 0.5).long())
    # and the loss is the mean of each member's loss
    y = torch.tensor([0.0, 1, 1, 0, 1, 0, 1])
    per_member = [
        torch.nn.functional.binary_cross_entropy_with_logits(members[:, j, 0], y) for j in range(6)
    ]
    torch.testing.assert_close(model.loss(members, y), torch.stack(per_member).mean())


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"embedding": "bogus"}, "embedding must be one of"),
        ({"n_bins": 1}, "n_bins must be a whole number of at least 2"),
        ({"k": 0}, "k must be a whole number of at least 1"),
        ({"dropout": 1.0}, "dropout must be in [0, 1)"),
        ({"arch_type": "tabm-max"}, "arch_type must be one of"),
        ({"num_features": 1}, "do not fit a row of 1 features"),
        ({"d_categorical": 0}, "d_categorical must be at least 1"),
    ],
)
def test_bad_options_are_one_line(kwargs: dict, says: str) -> None:
    quantiles = [sorted(torch.randn(257).tolist()) for _ in range(2)]
    args = {"num_features": 5, "numeric_quantiles": quantiles, **kwargs}
    with pytest.raises(ValueError) as raised:
        TabMNet(**args)
    assert says in str(raised.value) and "\n" not in str(raised.value)


def test_without_quantiles_or_a_tabular_datamodule_the_fit_says_what_is_missing() -> None:
    model = TabMNet(num_features=5, k=2, d_block=8)  # built when training starts
    assert model.network is None
    batches = [(torch.randn(4, 5), torch.tensor([0.0, 1, 0, 1]))]
    trainer = Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False)
    with pytest.raises(ValueError, match="needs the training quantiles of the numeric columns"):
        trainer.fit(model, train_dataloaders=DataLoader(batches, batch_size=None))


def test_a_constant_column_and_rows_without_numbers_are_handled() -> None:
    # a column with one value in training: two unit bins around it, no division by zero
    (edges,) = bins_from_quantiles([[0.0] * 257], 48)
    assert edges.tolist() == [-1.0, 0.0, 1.0]
    # no numeric column at all (only one-hot ones): nothing to embed, the MLP takes the row
    network = TabMNetwork(4, 3, numeric_quantiles=[], k=2, d_block=8)
    assert network.embeddings is None and network(torch.randn(5, 4)).shape == (5, 2, 3)


def test_a_categorical_column_is_one_hot_or_a_learned_vector_per_category(tmp_path: Path) -> None:
    shop(200).drop(columns=["kind", "tags", "price", "size"]).to_csv(
        tmp_path / "train.csv", index=False
    )
    dm = TabularDataModule(filename=str(tmp_path / "train.csv"), target="buy")
    # x1, x2, x3, member (yes/no), then color: <unknown>, blue, green, red
    assert dm.num_features == 8 and dm.category_sizes == [4]
    sizes = {"num_features": 8, "numeric_quantiles": dm.numeric_quantiles, "k": 2, "d_block": 8}
    torch.manual_seed(0)
    model = TabMNet(**sizes, category_sizes=dm.category_sizes, d_categorical=3)
    (table,) = model.network.category_tables
    rows = dm.transform(shop(3, seed=2).drop(columns=["kind", "tags", "price", "size"]))[0]
    codes = rows[:, 4:].argmax(dim=1)
    # a one-hot group times its table is the table's vector of that category
    torch.testing.assert_close(table(rows[:, 4:]), table.weight.T[codes])
    assert model(rows).shape == (3, 2, 1)
    one_hot = TabMNet(**sizes, category_sizes=dm.category_sizes)
    assert one_hot.network.category_tables is None
