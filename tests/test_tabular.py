"""TabularDataModule and the bank-marketing preset: preprocessing, splits, and bad input."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import make_frame
from dlzoo.data import BankMarketingDataModule, TabularDataModule


def dm_for(path: Path, **kwargs) -> TabularDataModule:
    return TabularDataModule(filename=str(path), target="target", batch_size=32, **kwargs)


def test_shapes_sizes_and_batches(csv_file: Path) -> None:
    dm = dm_for(csv_file)
    # x1, x2 numeric; flag yes/no -> one 0/1 column; color one-hot with the unknown slot
    assert dm.num_features == 2 + 1 + (3 + 1)
    assert dm.num_classes == 2 and dm.classes == ["no", "yes"]
    assert dm.feature_names[:3] == ["x1", "x2", "flag"]
    assert "color=<unknown>" in dm.feature_names
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (32, dm.num_features) and x.dtype == torch.float32
    assert y.shape == (32,) and y.dtype == torch.long and set(y.tolist()) <= {0, 1}
    assert len(dm.train_dataloader().dataset) == 320 and len(dm.val_dataloader().dataset) == 80


def test_split_is_stratified_seeded_and_disjoint(csv_file: Path) -> None:
    a, b, c = dm_for(csv_file), dm_for(csv_file), dm_for(csv_file, seed=1)
    for dm in (a, b, c):
        dm.setup("fit")
    train, val = a._load_splits()["train"], a._load_splits()["val"]
    assert not set(train.index) & set(val.index)
    assert train.index.tolist() == b._load_splits()["train"].index.tolist()
    assert train.index.tolist() != c._load_splits()["train"].index.tolist()
    assert val["target"].eq("yes").mean() == pytest.approx(
        train["target"].eq("yes").mean(), abs=0.01
    )


def test_test_split(csv_file: Path) -> None:
    dm = dm_for(csv_file, val_fraction=0.2, test_fraction=0.1)
    dm.setup("fit")
    sizes = [len(dm._split(s)) for s in ("train", "val", "test")]
    assert sizes == [280, 80, 40]
    assert len(dm.test_dataloader().dataset) == 40


def test_scaling_is_fitted_on_train_only(csv_file: Path) -> None:
    dm = dm_for(csv_file)
    dm.setup("fit")
    train_x = dm._split("train").tensors[0][:, :2]
    val_x = dm._split("val").tensors[0][:, :2]
    torch.testing.assert_close(train_x.mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    assert val_x.mean(0).abs().max() > 1e-3  # val is transformed with train's statistics
    raw = dm._load_splits()["train"]["x2"]
    assert dm._state["mean"][1] == pytest.approx(raw.mean())


def test_batches_are_shuffled_per_epoch_and_replayable(csv_file: Path) -> None:
    dm = dm_for(csv_file)
    loader = dm.train_dataloader()
    first = [y.tolist() for _, y in loader]
    loader.sampler.set_epoch(1)
    second = [y.tolist() for _, y in loader]
    loader.sampler.set_epoch(0)
    assert first != second and [y.tolist() for _, y in loader] == first


def test_unseen_category_maps_to_unknown_slot(csv_file: Path, tmp_path: Path) -> None:
    dm = dm_for(csv_file)
    rows = make_frame(n=3).drop(columns="target")
    rows.loc[0, "color"] = "purple"
    (x,) = dm.transform(rows)
    slot = dm.feature_names.index("color=<unknown>")
    colors = slice(slot, slot + 4)
    assert x[0, colors].tolist() == [1, 0, 0, 0]
    assert x[1:, colors].sum(1).tolist() == [1, 1] and x[1:, slot].sum() == 0


def test_predict_file_without_target(csv_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "raw.csv"
    make_frame(n=7, seed=3).drop(columns="target").to_csv(path, index=False)
    dm = dm_for(csv_file, predict_file=str(path))
    batch = next(iter(dm.predict_dataloader()))
    assert len(batch) == 1 and batch[0].shape == (7, dm.num_features)
    assert dm.predict_row_ids == list(range(7))


def test_column_type_overrides(tmp_path: Path) -> None:
    frame = make_frame()
    frame["code"] = np.arange(len(frame)) % 3  # integers that are really categories
    path = tmp_path / "codes.csv"
    frame.to_csv(path, index=False)
    dm = dm_for(path, categorical_columns=["code"], drop_columns=["x2"])
    assert "x2" not in dm.feature_names
    assert {"code=0", "code=1", "code=2"} <= set(dm.feature_names)
    with pytest.raises(ValueError, match=r"\['nope'\].*not in"):
        dm_for(path, drop_columns=["nope"]).num_features


def test_numeric_and_multiclass_targets(tmp_path: Path, multiclass_csv: Path) -> None:
    dm = dm_for(multiclass_csv)
    assert dm.classes == ["c0", "c1", "c2"]
    frame = make_frame()
    frame["target"] = np.where(frame["target"] == "yes", 10, 2)  # numeric order, not text order
    frame.to_csv(tmp_path / "num.csv", index=False)
    dm = dm_for(tmp_path / "num.csv")
    assert dm.classes == ["2", "10"]
    dm.setup("fit")
    assert set(dm._split("train").tensors[1].tolist()) == {0, 1}


# ------------------------------------------------------------------------------ bad input
def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    return path


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"training CSV not found: .*nope\.csv"):
        dm_for(tmp_path / "nope.csv").num_features


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is empty"):
        dm_for(write(tmp_path, "")).num_features
    with pytest.raises(ValueError, match="header but no data rows"):
        dm_for(write(tmp_path, "x1,target\n")).num_features


def test_missing_target_column(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"target column 'target' is not in .*columns are: a, b"):
        dm_for(write(tmp_path, "a,b\n1,2\n3,4\n")).num_features


def test_nan_in_feature_names_column_and_line(tmp_path: Path) -> None:
    frame = make_frame(n=50)
    frame.loc[[3, 9], "x2"] = np.nan
    path = tmp_path / "nan.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"column 'x2' has 2 empty value\(s\) on line\(s\) 5, 11"):
        dm_for(path).num_features
    dropped = dm_for(path, missing_values="drop")
    dropped.setup("fit")
    assert sum(len(dropped._split(s)) for s in ("train", "val")) == 48
    imputed = dm_for(path, missing_values="impute")
    imputed.setup("fit")
    assert sum(len(imputed._split(s)) for s in ("train", "val")) == 50
    assert torch.isfinite(imputed._split("train").tensors[0]).all()


def test_empty_cells_outside_the_features_are_harmless(tmp_path: Path, csv_file: Path) -> None:
    frame = make_frame(n=60)
    frame["note"] = np.where(np.arange(60) % 3 == 0, "called back", None)  # mostly empty
    frame.to_csv(tmp_path / "notes.csv", index=False)
    dm = dm_for(tmp_path / "notes.csv", drop_columns=["note"])
    dm.setup("fit")
    assert sum(len(dm._split(s)) for s in ("train", "val")) == 60
    rows = make_frame(n=4).drop(columns="target")
    rows["customer_id"] = [1, None, 3, None]  # an extra column the model never saw
    rows.to_csv(tmp_path / "new.csv", index=False)
    for missing in ("error", "drop"):
        fitted = dm_for(csv_file, missing_values=missing, predict_file=str(tmp_path / "new.csv"))
        assert len(fitted.predict_dataloader().dataset) == 4


def test_impute_fills_yes_no_columns_with_the_majority(tmp_path: Path) -> None:
    frame = make_frame(n=60)
    frame["flag"] = ["yes"] * 40 + ["no"] * 20
    frame.loc[[1, 50], "flag"] = np.nan
    frame.to_csv(tmp_path / "flags.csv", index=False)
    dm = dm_for(tmp_path / "flags.csv", missing_values="impute")
    column = dm.feature_names.index("flag")
    (x,) = dm.transform(frame.loc[[1, 50, 2]].drop(columns="target"))
    assert x[:, column].tolist() == [1.0, 1.0, 1.0]


def test_nan_in_target(tmp_path: Path) -> None:
    frame = make_frame(n=50)
    frame.loc[4, "target"] = np.nan
    frame.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(ValueError, match=r"target 'target' is empty on line\(s\) 6"):
        dm_for(tmp_path / "t.csv").num_features


def test_predict_file_errors_name_the_problem(csv_file: Path, tmp_path: Path) -> None:
    dm = dm_for(csv_file)
    rows = make_frame(n=4).drop(columns=["target", "x1"])
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['x1'\]"):
        dm.transform(rows, "new.csv")
    rows = make_frame(n=4).astype({"x2": object})
    rows.loc[2, "x2"] = "lots"
    with pytest.raises(
        ValueError, match=r"column 'x2' is not a number on line\(s\) 4, e.g. 'lots'"
    ):
        dm.transform(rows)
    rows = make_frame(n=4)
    rows.loc[1, "flag"] = "maybe"
    with pytest.raises(ValueError, match="'flag' should be yes or no, found 'maybe'"):
        dm.transform(rows)
    rows = make_frame(n=4)
    rows.loc[0, "target"] = "perhaps"
    with pytest.raises(ValueError, match=r"'perhaps'.*not one of the training classes"):
        dm.transform(rows)


def test_unseen_category_is_logged(csv_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows = make_frame(n=2).drop(columns="target")
    rows["color"] = "purple"
    with caplog.at_level(logging.INFO, logger="dlzoo"):
        dm_for(csv_file).transform(rows, "new.csv")
    assert "2 value(s) of 'color' not seen in training" in caplog.text


def test_no_test_data_is_a_clear_error(csv_file: Path) -> None:
    with pytest.raises(ValueError, match="no test data"):
        dm_for(csv_file).test_dataloader()


def test_bad_arguments(csv_file: Path) -> None:
    with pytest.raises(ValueError, match="val_fraction"):
        dm_for(csv_file, val_fraction=0.0)
    with pytest.raises(ValueError, match="leave rows for training"):
        dm_for(csv_file, val_fraction=0.6, test_fraction=0.4)
    with pytest.raises(ValueError, match="missing_values"):
        dm_for(csv_file, missing_values="guess")


def test_download_when_missing(tmp_path: Path, csv_file: Path) -> None:
    import hashlib

    digest = hashlib.sha256(csv_file.read_bytes()).hexdigest()
    dm = TabularDataModule(
        filename="mine.csv",
        target="target",
        data_dir=str(tmp_path / "d"),
        url=csv_file.as_uri(),
        sha256=digest,
    )
    dm.prepare_data()
    assert (tmp_path / "d" / "mine.csv").is_file() and dm.num_features == 7


def test_state_round_trip_preserves_preprocessing(csv_file: Path) -> None:
    dm = dm_for(csv_file)
    state = dm.state_dict()
    other = dm_for(csv_file, seed=99)  # a different split would fit different statistics
    other.load_state_dict(state)
    rows = make_frame(n=5, seed=5)
    torch.testing.assert_close(other.transform(rows)[0], dm.transform(rows)[0])
    assert set(map(type, state["preprocessing"].values())) <= {str, list, dict}


def test_bank_marketing_preset_ships_its_csv() -> None:
    dm = BankMarketingDataModule()
    assert dm.csv_path.is_file() and dm.csv_path.parent.name == "_files"
    frame = pd.read_csv(dm.csv_path)
    assert frame.shape == (11162, 17) and frame["deposit"].value_counts()["yes"] == 5289
    assert dm.classes == ["no", "yes"]
    assert {"default", "housing", "loan"} <= set(dm.feature_names)  # yes/no -> 0/1
    realistic = BankMarketingDataModule(drop_columns=["duration"])
    assert "duration" in dm.feature_names and "duration" not in realistic.feature_names
    assert realistic.num_features == dm.num_features - 1


def _write(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


def test_question_marks_are_missing_with_na_values_and_warned_about_without(
    tmp_path: Path, caplog
) -> None:
    frame = make_frame()
    frame.loc[[3, 10], "color"] = "?"  # the UCI census files' missing marker
    path = _write(frame, tmp_path / "q.csv")
    with caplog.at_level(logging.WARNING, logger="dlzoo.data.tabular"):
        dm_for(path).num_features
    assert "column 'color' holds '?' in 2 row(s)" in caplog.text and "na_values" in caplog.text
    dm = dm_for(path, na_values=["?"], missing_values="impute")
    assert "color=?" not in dm.feature_names and "color=<missing>" in dm.feature_names
    with pytest.raises(
        ValueError, match=r"column 'color' has 2 empty value\(s\) on line\(s\) 5, 12"
    ):
        dm_for(path, na_values=["?"]).num_features


def test_a_stray_string_in_a_numeric_column_is_named_not_one_hot_encoded(tmp_path: Path) -> None:
    frame = make_frame().astype({"x2": object})
    frame.loc[57, "x2"] = "1,234"
    path = _write(frame, tmp_path / "stray.csv")
    with pytest.raises(ValueError, match=r"column 'x2' holds numbers but not on line\(s\) 59"):
        dm_for(path).num_features
    # declared numeric, the stray value anywhere (here: whichever split it lands in)
    with pytest.raises(
        ValueError, match=r"'x2' holds numbers but not on line\(s\) 59, e.g. '1,234'"
    ):
        dm_for(path, numeric_columns=["x2"]).setup("fit")


def test_non_finite_and_huge_values_are_refused(tmp_path: Path) -> None:
    frame = make_frame()
    frame.loc[8, "x1"] = 1e300  # squared by the scaler: inf, then NaN losses
    with pytest.raises(ValueError, match=r"column 'x1' holds a non-finite or huge value .* 10"):
        dm_for(_write(frame, tmp_path / "huge.csv")).num_features
    dm = dm_for(_write(make_frame(), tmp_path / "ok.csv"))
    new = make_frame(n=4, seed=2).drop(columns="target")
    new.loc[1, "x2"] = float("inf")
    with pytest.raises(
        ValueError, match=r"new rows: column 'x2' holds a non-finite .* line\(s\) 3"
    ):
        dm.transform(new, "new rows")


def test_a_target_typo_is_not_a_third_class(tmp_path: Path) -> None:
    frame = make_frame()
    frame.loc[20, "target"] = "Yes"
    with pytest.raises(ValueError, match=r"'Yes' on line\(s\) 22 looks like a typo of 'yes'"):
        dm_for(_write(frame, tmp_path / "typo.csv")).num_classes


def test_non_utf8_file_is_named_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("x1,color,target\n1,red,yes\n2,gr\xfcn,no\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.csv is not UTF-8 text: line 3 reads .2,gr.n,no."):
        dm_for(path).num_features


def test_an_id_column_is_warned_about_and_one_hot_stays_linear(tmp_path: Path, caplog) -> None:
    frame = make_frame(n=400)
    frame["customer"] = [f"c{i:05d}" for i in range(400)]
    path = _write(frame, tmp_path / "ids.csv")
    with caplog.at_level(logging.WARNING, logger="dlzoo.data.tabular"):
        dm = dm_for(path)
        dm.setup("fit")
    assert "column 'customer' has 320 distinct values in 320 training rows" in caplog.text
    assert "drop_columns: [customer]" in caplog.text
    x, _ = dm._split("train").tensors
    assert x.shape == (320, 2 + 1 + 4 + 321) and x.dtype == torch.float32
    assert torch.equal(x[:, -321:].sum(1), torch.ones(320))  # one slot per row


def test_served_rows_take_the_fast_path_with_the_numbers_of_a_csv(tmp_path: Path) -> None:
    """JSON rows that need no fill or check skip pandas (15 ms a call) and get exactly the
    features a predict CSV's rows get; anything else goes through pandas and its errors."""
    make_frame(n=200).to_csv(tmp_path / "rows.csv", index=False)
    dm = TabularDataModule(filename=str(tmp_path / "rows.csv"), target="target")
    prep = dm.preprocessor
    rows = make_frame(n=50, seed=9).drop(columns="target").to_dict("records")
    rows[3]["color"] = "purple"  # unseen in training: slot 0
    rows[4]["flag"] = " YES "  # spelled as a CSV may have it
    rows[5]["x2"] = 7  # an int
    rows[6]["extra"] = "ignored"
    fast = prep._plain_rows(rows)
    assert fast is not None
    expected = prep.transform(pd.DataFrame.from_records(rows), "request")[0]
    assert torch.equal(fast, expected)
    assert torch.equal(torch.stack(prep.encode(rows)), expected)
    slow = [
        {**rows[0], "x1": None},
        {**rows[0], "x1": "3.5"},
        {**rows[0], "x1": True},
        {**rows[0], "x1": float("nan")},
        {**rows[0], "flag": "maybe"},
        {**rows[0], "color": 1.5},
        {k: v for k, v in rows[0].items() if k != "color"},
    ]
    for row in slow:
        assert prep._plain_rows([row]) is None, row
    assert torch.equal(
        prep.encode([{**rows[0], "x1": "3.5"}])[0], prep.encode([{**rows[0], "x1": 3.5}])[0]
    )
