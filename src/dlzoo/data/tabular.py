"""Tabular data from any CSV (the bank-marketing preset of chapter 5: ``bank.py``).

Preprocessing is fitted on the training split only and kept as plain lists (column names, means,
scales, category lists) in the DataModule's ``state_dict``, which Lightning stores in every
checkpoint. So ``dlzoo predict`` on raw CSV rows works after a reload, and checkpoints load with
``torch.load(weights_only=True)``: no pickled scikit-learn or dlzoo objects inside.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from sklearn.preprocessing import StandardScaler
from torch.utils.data import DataLoader

from dlzoo.data.base import DataModule, check_restored_task, check_task_option, seeded_split
from dlzoo.data.batching import TensorBatchDataset, batch_loader, ordered_loader
from dlzoo.data.download import default_cache_dir, download_file
from dlzoo.data.preprocess.tabular import (
    MISSING,
    UNKNOWN,
    YES_NO,
    MissingValues,
    TabularPreprocessor,
    handle_missing,
    is_yes_no,
    numeric_quantiles,
    refuse_non_finite,
    rows_of,
)
from dlzoo.data.reading import read_csv
from dlzoo.data.targets import decide_task, fit_targets
from dlzoo.registry import register_datamodule
from dlzoo.tasks import TASKS, TaskName

log = logging.getLogger(__name__)

#: cell values that often mean "missing" in real CSVs (pandas already reads NA, N/A, null, nan)
MISSING_MARKERS = {"?", "-", "--", "none", "missing", "n.a.", "na."}
#: a text column whose values are numbers but for this share of cells is a typo'd numeric column
NUMERIC_SHARE = 0.95


@register_datamodule("tabular")
class TabularDataModule(DataModule):
    """Classification, multi-label classification or (multi-target) regression on the rows of a
    CSV file.

    Numeric columns are standardised; yes/no columns become 0/1; other text columns are one-hot
    encoded with a reserved slot for categories the training split never saw. The task is
    decided once from the target column(s) and logged (see :mod:`dlzoo.data.targets`); the split
    into train/val(/test) is seeded, and stratified on the target for classification.

    Args:
        filename: the CSV, relative to ``data_dir`` (or absolute).
        target: the column to predict, or several. Classes are the distinct values in sorted
            order (so ``no``/``yes`` map to 0/1); regression targets are standardised on the
            training split and every output is in their own units.
        task: ``binary``, ``multiclass``, ``multilabel`` or ``regression``; default: inferred
            from the target (strings, booleans, a few integers: classes; floats, many integers:
            regression; label lists or several 0/1 columns: multi-label).
        label_delimiter: what separates labels in a label-list target (``drama|comedy``).
        log_target: regression on ``log1p`` of the target (prices, counts), inverted at output.
        data_dir: where the CSV is, or is downloaded to when ``url`` is given. Default: the
            current directory, or the dlzoo cache (``$DLZOO_DATA``) when ``url`` is given.
        categorical_columns: force these columns to be one-hot encoded (e.g. integer codes).
        numeric_columns: force these columns to be treated as numbers.
        drop_columns: columns not to use as features (e.g. an id, or a leaking column).
        val_fraction: share of rows held out for validation.
        test_fraction: share of rows held out for ``dlzoo test`` (0: use ``test_file``).
        missing_values: what to do with empty cells: ``error`` (say where they are), ``drop`` the
            rows, or ``impute`` (training median for numbers, an own category for text).
        na_values: more cell values that mean "missing" (pandas' ``na_values``), e.g. ``["?"]``
            for the UCI census files; a categorical column holding a likely marker is warned about.
        test_file: a separate labelled CSV for ``dlzoo test``.
        predict_file: a CSV of raw rows (target column optional) for ``dlzoo predict``; default: the
            validation split.
        url: where to download ``filename`` from if it is missing; ``sha256`` checks it.
        batch_size: rows per batch.
        num_workers: DataLoader workers (0 is fastest: batches are slices of in-memory tensors).
        seed: seed of the split and of the per-epoch shuffle.
    """

    def __init__(
        self,
        filename: str,
        target: str | list[str],
        task: TaskName | None = None,
        label_delimiter: str = "|",
        log_target: bool = False,
        data_dir: str | None = None,
        categorical_columns: list[str] | None = None,
        numeric_columns: list[str] | None = None,
        drop_columns: list[str] | None = None,
        val_fraction: float = 0.2,
        test_fraction: float = 0.0,
        missing_values: MissingValues = "error",
        na_values: list[str] | None = None,
        test_file: str | None = None,
        predict_file: str | None = None,
        url: str | None = None,
        sha256: str | None = None,
        batch_size: int = 128,
        num_workers: int = 0,
        seed: int = 2020,
    ) -> None:
        super().__init__()  # saves the hyperparameters
        if not 0.0 < val_fraction < 1.0 or not 0.0 <= test_fraction < 1.0:
            raise ValueError("val_fraction must be in (0, 1) and test_fraction in [0, 1)")
        if val_fraction + test_fraction >= 1.0:
            raise ValueError("val_fraction + test_fraction must leave rows for training")
        if missing_values not in ("error", "drop", "impute"):
            raise ValueError(
                f"missing_values must be error, drop or impute, got {missing_values!r}"
            )
        # Settings live as attributes too: under LightningCLI, hparams hold only the arguments of
        # the concrete class (a preset such as BankMarketingDataModule fixes `target` itself).
        check_task_option(task)
        self.filename, self.target, self.data_dir = filename, target, data_dir
        self.targets = [target] if isinstance(target, str) else list(target)
        if not self.targets:
            raise ValueError("target names no column")
        self.task_option, self.label_delimiter, self.log_target = task, label_delimiter, log_target
        self.categorical_columns = list(categorical_columns or [])
        self.numeric_columns = list(numeric_columns or [])
        self.drop_columns = list(drop_columns or [])
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.missing_values = missing_values
        self.na_values = list(na_values) if na_values else None
        self.test_file, self.predict_file = test_file, predict_file
        self.url, self.sha256 = url, sha256
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self._state: dict[str, Any] | None = None  # fitted preprocessing, plain data only
        self._task: str | None = None
        self._preprocessor: TabularPreprocessor | None = None
        self._splits: dict[str, pd.DataFrame] | None = None  # raw frames of each split
        self._tensors: dict[str, TensorBatchDataset] = {}

    # ----------------------------------------------------------------------------------- files
    @property
    def csv_path(self) -> Path:
        root = Path(self.data_dir) if self.data_dir else self.default_data_dir()
        return root.expanduser() / self.filename

    def default_data_dir(self) -> Path:
        """Where the CSV is when ``data_dir`` is not given."""
        return default_cache_dir() if self.url else Path()

    def prepare_data(self) -> None:
        if self.url and not self.csv_path.is_file():
            download_file(self.url, self.csv_path.parent, self.csv_path.name, self.sha256)

    # ---------------------------------------------------------------- sizes the CLI links to
    @property
    def num_features(self) -> int:
        """Width of a preprocessed row (one-hot columns counted); fits the preprocessing if needed."""
        return len(self._ensure_state()["feature_names"])

    @property
    def fitted_targets(self) -> dict[str, Any]:
        """The target state fitted on the training rows (fits the preprocessing if needed)."""
        return self.preprocessor.targets

    @property
    def numeric_quantiles(self) -> list[list[float]] | None:
        """Per numeric column (the leading features of a row), its quantiles on the training
        split at levels 0, 1/256, ..., 1, standardised as the model sees them: the bins of
        piecewise-linear embeddings (``tabm``). ``None`` for preprocessing fitted before
        dlzoo kept them."""
        return self._ensure_state().get("quantiles")

    @property
    def category_sizes(self) -> list[int]:
        """The one-hot width of each categorical column, in row order (the last features: a
        slot for values never seen in training, then the training categories)."""
        return [len(known) + 1 for known in self._ensure_state()["categories"].values()]

    @property
    def feature_names(self) -> list[str]:
        return list(self._ensure_state()["feature_names"])

    # ------------------------------------------------------------------------ preprocessing
    def _ensure_state(self) -> dict[str, Any]:
        if self._state is None:
            self._state = self._fit(self._load_splits()["train"])
        return self._state

    def _load_splits(self) -> dict[str, pd.DataFrame]:
        if self._splits is not None:
            return self._splits
        if self.url and not self.csv_path.is_file():
            raise FileNotFoundError(
                f"{self.csv_path} is not downloaded yet: call prepare_data() to fetch {self.url} "
                "(the dlzoo command and Lightning's Trainer do)"
            )
        frame = read_csv(self.csv_path, "training CSV", self.na_values)
        absent = [t for t in self.targets if t not in frame.columns]
        if absent:
            raise ValueError(
                f"target column {absent[0]!r} is not in {self.csv_path}; "
                f"columns are: {', '.join(map(str, frame.columns))}"
            )
        frame = handle_missing(
            frame,
            self.csv_path,
            self.targets,
            self.missing_values,
            require_target=True,
            columns=self._feature_columns(frame),
        )
        names = ", ".join(repr(t) for t in self.targets)
        self._task = decide_task(
            self.task_option, frame, self.targets, self.label_delimiter, f"the target {names}", log
        )
        stratify = None
        if TASKS[self._task].classification:
            counts = frame[self.targets[0]].value_counts()
            self._check_target_spellings(frame, counts)
            if len(counts) < 2:
                raise ValueError(
                    f"target column {self.target!r} has a single class: {counts.index[0]!r}"
                )
            stratify = frame[self.target] if counts.min() >= 2 else None
        # whole row counts, so 0.2 + 0.1 of 400 rows is exactly 80 + 40
        n_val = round(self.val_fraction * len(frame))
        n_test = round(self.test_fraction * len(frame))
        if n_val < 1 or len(frame) - n_val - n_test < 1:
            raise ValueError(f"{self.csv_path} has {len(frame)} rows: too few to split")
        train, rest = seeded_split(len(frame), n_val + n_test, self.seed, stratify)
        splits = {"train": frame.iloc[train], "val": frame.iloc[rest]}
        if n_test:
            in_rest = stratify.iloc[rest] if stratify is not None else None
            val, test = (rest[i] for i in seeded_split(len(rest), n_test, self.seed, in_rest))
            splits.update(val=frame.iloc[val], test=frame.iloc[test])
        self._splits = splits
        return splits

    def _check_target_spellings(self, frame: pd.DataFrame, counts: pd.Series) -> None:
        """Refuse classes that differ only in case or spaces (``Yes`` among ``yes``): a typo would
        silently become a class of its own."""
        spelled: dict[str, list] = {}
        for label in counts.index:
            spelled.setdefault(str(label).strip().lower(), []).append(label)
        for variants in spelled.values():
            if len(variants) > 1:
                rare = min(variants, key=lambda v: counts[v])
                lines = frame.index[frame[self.target] == rare]
                raise ValueError(
                    f"{self.csv_path}: target {self.target!r} has {variants} (differing only in "
                    f"case or spaces); {rare!r} on {rows_of(lines)} looks like a typo of "
                    f"{max(variants, key=lambda v: counts[v])!r}. Fix those cells."
                )

    def _feature_columns(self, frame: pd.DataFrame) -> list[str]:
        named = [*self.categorical_columns, *self.numeric_columns, *self.drop_columns]
        unknown = [c for c in named if c not in frame.columns]
        if unknown:
            raise ValueError(
                f"columns {unknown} given in categorical_columns/numeric_columns/drop_columns are "
                f"not in {self.csv_path}; columns are: {', '.join(map(str, frame.columns))}"
            )
        skip = {*self.targets, *self.drop_columns}
        return [c for c in frame.columns if c not in skip]

    def _read_new_rows(self, path: Path, what: str, require_target: bool) -> pd.DataFrame:
        """A test or predict CSV, with ``missing_values`` applied to the columns the model reads."""
        frame = read_csv(path, what, self.na_values)
        state = self._ensure_state()
        used = {*state["numeric"], *state["binary"], *state["categories"]}
        columns = [c for c in frame.columns if c in used]
        return handle_missing(
            frame, path, self.targets, self.missing_values, require_target, columns
        )

    def _fit(self, train: pd.DataFrame) -> dict[str, Any]:
        columns = self._feature_columns(train)
        forced_categorical = set(self.categorical_columns)
        forced_numeric = set(self.numeric_columns)
        numeric, binary, categorical = [], [], []
        for column in columns:
            series = train[column]
            if column in forced_numeric:
                self._refuse_non_numbers(series, column)
                numeric.append(column)
            elif column in forced_categorical:
                categorical.append(column)
            elif is_yes_no(series):
                binary.append(column)
            elif pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
                numeric.append(column)
            else:
                parsed = pd.to_numeric(series.dropna(), errors="coerce")
                if len(parsed) and parsed.notna().mean() >= NUMERIC_SHARE:
                    self._refuse_non_numbers(series, column)  # numbers, and a few stray strings
                self._warn_about_category_values(series, column, len(train))
                categorical.append(column)

        values = train[numeric].apply(pd.to_numeric, errors="coerce").astype("float64")
        refuse_non_finite(values, self.csv_path)
        fill = values.median().fillna(0.0).tolist()
        binary_fill = [
            float(train[c].dropna().astype(str).str.strip().str.lower().map(YES_NO).mean() >= 0.5)
            for c in binary
        ]
        filled = values.fillna(dict(zip(numeric, fill, strict=True)))
        scaler = StandardScaler().fit(filled)
        categories = {
            column: sorted(set(train[column].dropna().astype(str)) - {UNKNOWN, MISSING})
            + ([MISSING] if self.missing_values == "impute" else [])
            for column in categorical
        }
        feature_names = [*numeric, *binary]
        for column in categorical:
            feature_names += [f"{column}={c}" for c in [UNKNOWN, *categories[column]]]
        targets = fit_targets(
            train,
            self.targets,
            self._task,
            self.label_delimiter,
            self.log_target,
            str(self.csv_path),
            rows_of,
        )
        return {
            "target": self.target,
            "classes": targets.get("classes") or [],
            "targets": targets,
            "numeric": numeric,
            "mean": scaler.mean_.tolist() if numeric else [],
            "scale": scaler.scale_.tolist() if numeric else [],
            "fill": fill,
            "binary": binary,
            "binary_fill": binary_fill,
            "categories": categories,
            "feature_names": feature_names,
            "quantiles": numeric_quantiles(scaler.transform(filled)) if numeric else [],
        }

    def _refuse_non_numbers(self, series: pd.Series, column: str) -> None:
        bad = series.index[pd.to_numeric(series, errors="coerce").isna() & series.notna()]
        if len(bad):
            raise ValueError(
                f"{self.csv_path}: column {column!r} holds numbers but not on "
                f"{rows_of(bad)}, e.g. {series[bad[0]]!r}. Fix those cells, declare the marker "
                f"missing (na_values: [{str(series[bad[0]])!r}]), or list {column!r} in "
                "categorical_columns if it really is a category."
            )

    def _warn_about_category_values(self, series: pd.Series, column: str, rows: int) -> None:
        values = series.dropna().astype(str)
        markers = sorted({v for v in values.unique() if v.strip().lower() in MISSING_MARKERS})
        if markers:
            log.warning(
                "column %r holds %s in %d row(s): if that marks a missing value, set na_values: %s",
                column,
                " and ".join(repr(m) for m in markers),
                int(values.isin(markers).sum()),
                markers,
            )
        distinct = values.nunique()
        if distinct > 100 and distinct > 0.5 * rows:
            log.warning(
                "column %r has %d distinct values in %d training rows: it looks like an "
                "identifier and becomes %d one-hot features that cannot generalise; leave it out "
                "with drop_columns: [%s]",
                column,
                distinct,
                rows,
                distinct + 1,
                column,
            )

    def transform(self, frame: pd.DataFrame, source: str = "data") -> tuple[torch.Tensor, ...]:
        """Preprocess raw rows with the fitted state: ``(features, targets)`` or ``(features,)``."""
        return self.preprocessor.transform(frame, source)

    @property
    def preprocessor(self) -> TabularPreprocessor:
        """The fitted preprocessing of rows (fitted on the training split when first needed)."""
        if self._preprocessor is None:
            self._preprocessor = TabularPreprocessor(
                self._ensure_state(), self.missing_values, self.na_values
            )
        return self._preprocessor

    # --------------------------------------------------------------------------- Lightning
    def setup(self, stage: str | None = None) -> None:
        # Predict data is read in predict_dataloader(): Lightning restores this DataModule's
        # fitted state from the checkpoint after setup() and before asking for dataloaders.
        if stage == "predict":
            return
        splits = self._load_splits()
        self._ensure_state()
        for name, frame in splits.items():
            if name not in self._tensors:
                self._tensors[name] = TensorBatchDataset(*self.transform(frame, f"{name} split"))

    def _loader(self, dataset: TensorBatchDataset, shuffle: bool = False) -> DataLoader:
        return batch_loader(
            dataset, self.batch_size, shuffle=shuffle, seed=self.seed, num_workers=self.num_workers
        )

    def _split(self, name: str) -> TensorBatchDataset:
        if name not in self._tensors:
            self.setup("fit")
        return self._tensors[name]

    def train_dataloader(self) -> DataLoader:
        return self._loader(self._split("train"), shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._split("val"))

    def test_dataloader(self) -> DataLoader:
        if self.test_file:
            path = Path(self.test_file).expanduser()
            frame = self._read_new_rows(path, "test CSV", require_target=True)
            return self._loader(TensorBatchDataset(*self.transform(frame, str(path))))
        if self.test_fraction > 0:
            return self._loader(self._split("test"))
        raise ValueError("no test data: set data.test_fraction > 0 or data.test_file")

    def predict_dataloader(self) -> DataLoader:
        if self.predict_file is None:
            dataset = self._split("val")
            self.predict_row_ids = self._load_splits()["val"].index.tolist()
        else:
            path = Path(self.predict_file).expanduser()
            frame = self._read_new_rows(path, "predict CSV", require_target=False)
            dataset = TensorBatchDataset(*self.transform(frame, str(path)))
            self.predict_row_ids = frame.index.tolist()
        return ordered_loader(dataset, self.batch_size, num_workers=self.num_workers)

    # ---------------------------------------------------------- saved with every checkpoint
    #: options that decide the model's input: fixed by a checkpoint's fitted preprocessing
    input_options = (
        "target",
        "categorical_columns",
        "numeric_columns",
        "drop_columns",
        "label_delimiter",
        "log_target",
    )

    def state_dict(self) -> dict[str, Any]:
        return {"preprocessing": self._ensure_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        check_restored_task(
            self.task_option, state_dict["preprocessing"].get("targets", {}).get("task")
        )
        self._state = state_dict["preprocessing"]
        self._preprocessor = None
        self._tensors.clear()  # re-made with the restored preprocessing when next needed
