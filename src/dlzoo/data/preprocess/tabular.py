"""Tabular rows as feature vectors (:class:`TabularPreprocessor`), with the state a
:class:`~dlzoo.data.tabular.TabularDataModule` fitted on its training split."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from dlzoo.data.preprocess import Preprocessor, rows_text
from dlzoo.data.targets import YES_NO, encode_targets
from dlzoo.tasks import classification_task

# the logger of the DataModule, as before the move: users filter on its name
log = logging.getLogger("dlzoo.data.tabular")

UNKNOWN = "<unknown>"  # one-hot slot 0 of every categorical column: values never seen in training
MISSING = "<missing>"  # the category of empty cells when missing_values="impute"

MissingValues = Literal["error", "drop", "impute"]


def rows_of(index: pd.Index, limit: int = 5) -> str:
    """``line(s) 5, 11`` of a CSV (pandas row i is line i + 2: line 1 is the header), or
    ``input(s) 0, 3`` of rows sent as JSON (an index named ``input``)."""
    offset, unit = (0, "input(s)") if index.name == "input" else (2, "line(s)")
    return rows_text(index, unit, offset, limit)


def is_yes_no(series: pd.Series) -> bool:
    if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        return False
    values = set(series.dropna().astype(str).str.strip().str.lower().unique())
    return bool(values) and values <= set(YES_NO)


def handle_missing(
    frame: pd.DataFrame,
    path: Path | str,
    target: str | list[str],
    missing_values: MissingValues,
    require_target: bool,
    columns: list[str],
) -> pd.DataFrame:
    """Apply ``missing_values`` to the target and ``columns`` (an empty cell elsewhere, in an
    id or a note column, is harmless)."""
    targets = [target] if isinstance(target, str) else list(target)
    present = [t for t in targets if t in frame.columns]
    for name in targets if require_target else present:
        bad = frame.index[frame[name].isna()]
        if len(bad) and missing_values != "drop":
            raise ValueError(
                f"{path}: target {name!r} is empty on {rows_of(bad)}; fill or remove "
                "those rows, or set missing_values='drop'"
            )
    if missing_values == "error":
        for column in columns:
            bad = frame.index[frame[column].isna()]
            if len(bad):
                raise ValueError(
                    f"{path}: column {column!r} has {len(bad)} empty value(s) on "
                    f"{rows_of(bad)}; fix the file or set missing_values to 'drop' or 'impute'"
                )
    elif missing_values == "drop":
        checked = [*columns, *present]
        keep = frame[checked].notna().all(axis=1)
        if (~keep).any():
            log.warning(
                "%s: dropped %d row(s) with empty values (%s)",
                path,
                int((~keep).sum()),
                rows_of(frame.index[~keep]),
            )
        frame = frame[keep]
        if frame.empty:
            raise ValueError(f"{path}: every row has an empty value; nothing left to use")
    return frame


def refuse_non_finite(values: pd.DataFrame, source: str | Path) -> None:
    # infinities, and numbers so large that scaling them overflows (1e300 squared)
    bad = ~np.isfinite(values.to_numpy()) | (values.abs().to_numpy() > 1e150)
    bad &= values.notna().to_numpy()
    if bad.any():
        row, col = np.argwhere(bad)[0]
        column = values.columns[col]
        lines = values.index[bad[:, col]]
        raise ValueError(
            f"{source}: column {column!r} holds a non-finite or huge value "
            f"{float(values.iloc[row, col])} on {rows_of(lines)}; fix or remove those rows"
        )


def numeric_quantiles(values: np.ndarray, levels: int = 256) -> list[list[float]]:
    """Per column of ``values`` (rows x columns), its quantiles at ``0, 1/levels, ..., 1``
    (linear interpolation, as ``torch.quantile`` and ``rtdl_num_embeddings.compute_bins``)."""
    grid = np.linspace(0.0, 1.0, levels + 1)
    return np.quantile(values, grid, axis=0).T.tolist()


class TabularPreprocessor(Preprocessor):
    """Rows (a CSV's, or JSON objects of column -> value) as feature vectors, with the state a
    :class:`TabularDataModule` fitted on its training split: column kinds in feature order,
    scaler statistics, fill values, category lists, classes. Plain lists only.

    Args:
        state: the fitted state (``TabularDataModule.state_dict()["preprocessing"]``).
        missing_values: what empty cells of new rows do (``error``, ``drop``, ``impute``).
        na_values: more cell values that mean "missing".
    """

    kind = "tabular"
    input_names = ("features",)
    batch_encode = True

    def __init__(
        self,
        state: dict[str, Any],
        missing_values: MissingValues = "error",
        na_values: list[str] | None = None,
    ) -> None:
        self.state, self.missing_values, self.na_values = state, missing_values, na_values
        #: per categorical column, value -> one-hot slot (0: never seen in training)
        self.category_codes = {
            column: {value: i + 1 for i, value in enumerate(known)}
            for column, known in state["categories"].items()
        }

    @property
    def num_features(self) -> int:
        return len(self.state["feature_names"])

    def example(self, batch_size: int, length: int = 9) -> torch.Tensor:
        generator = torch.Generator().manual_seed(batch_size * 1000 + length)
        return torch.randn(batch_size, self.num_features, generator=generator)

    def transform(self, frame: pd.DataFrame, source: str = "data") -> tuple[torch.Tensor, ...]:
        """Preprocess raw rows with the fitted state: ``(features, targets)`` or ``(features,)``."""
        state = self.state
        needed = [*state["numeric"], *state["binary"], *state["categories"]]
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise ValueError(
                f"{source} lacks column(s) {missing} that the model was trained on; "
                f"it has: {', '.join(map(str, frame.columns))}"
            )
        parts = []
        if state["numeric"]:
            values = frame[state["numeric"]].apply(pd.to_numeric, errors="coerce")
            for column, raw in zip(state["numeric"], frame[state["numeric"]].items(), strict=True):
                bad = frame.index[values[column].isna() & raw[1].notna()]
                if len(bad):
                    raise ValueError(
                        f"{source}: column {column!r} is not a number on "
                        f"{rows_of(bad)}, e.g. {raw[1][bad[0]]!r}"
                    )
            refuse_non_finite(values, source)
            values = values.fillna(dict(zip(state["numeric"], state["fill"], strict=True)))
            parts.append((values.to_numpy(np.float64) - state["mean"]) / state["scale"])
        for column, default in zip(state["binary"], state["binary_fill"], strict=True):
            text = frame[column].astype(str).str.strip().str.lower()
            text = text.where(frame[column].notna(), "yes" if default else "no")
            bad = frame.index[~text.isin(list(YES_NO))]
            if len(bad):
                raise ValueError(
                    f"{source}: column {column!r} should be yes or no, found "
                    f"{frame[column][bad[0]]!r} on {rows_of(bad)}"
                )
            parts.append(text.map(YES_NO).to_numpy(np.float64)[:, None])
        for column, known in state["categories"].items():
            text = frame[column].astype(str).where(frame[column].notna(), MISSING)
            codes = pd.Index(known).get_indexer(text).astype(np.int64) + 1  # unseen: -1 -> slot 0
            unseen = int((codes == 0).sum())
            if unseen:
                log.info(
                    "%s: %d value(s) of %r not seen in training, mapped to %s",
                    source,
                    unseen,
                    column,
                    UNKNOWN,
                )
            one_hot = np.zeros((len(codes), len(known) + 1), dtype=np.float32)
            one_hot[np.arange(len(codes)), codes] = 1.0  # rows x categories, nothing quadratic
            parts.append(one_hot)
        features = torch.from_numpy(np.concatenate(parts, axis=1, dtype=np.float32))
        targets = self.targets
        if not all(c in frame.columns for c in targets["columns"]):
            return (features,)
        return features, encode_targets(frame, targets, source, rows_of)

    @property
    def targets(self) -> dict[str, Any]:
        """The fitted target state (checkpoints of 0.1.0.dev0 had classes only)."""
        state = self.state
        if "targets" in state:
            return state["targets"]
        classes = state["classes"]
        task = classification_task(len(classes))
        return {"task": task, "columns": [state["target"]], "classes": classes}

    def encode(self, inputs: Sequence[Any]) -> list[torch.Tensor]:
        """Raw rows (dicts of column -> value, as JSON has them) as preprocessed feature vectors,
        with the fitted state and the same code as a predict CSV (``missing_values`` applies)."""
        for number, row in enumerate(inputs):
            if not isinstance(row, dict):
                raise ValueError(
                    f"input {number}: a tabular row is an object of column -> value, "
                    f"got {type(row).__name__}"
                )
            for column, value in row.items():
                if not isinstance(value, str | int | float | bool | type(None)):
                    raise ValueError(
                        f"input {number}: column {column!r} holds a {type(value).__name__}; "
                        "a value is a number, a string or null"
                    )
                if isinstance(value, int) and abs(value) > 1e150:  # JSON allows any digits
                    digits = len(str(abs(value)))
                    raise ValueError(
                        f"input {number}: column {column!r} holds a number of {digits} digits, "
                        "too large to use"
                    )
        fast = self._plain_rows(inputs)
        if fast is not None:
            return list(fast)
        frame = pd.DataFrame.from_records(list(inputs))
        frame.index = pd.RangeIndex(len(frame), name="input")
        # as in a CSV: an empty string, or a declared marker, is a missing value
        frame = frame.replace(["", *(self.na_values or [])], np.nan)
        state = self.state
        used = [c for c in frame.columns if c in {*state["numeric"], *state["binary"]}]
        used += [c for c in frame.columns if c in state["categories"]]
        frame = handle_missing(frame, "request", state["target"], self.missing_values, False, used)
        if len(frame) != len(inputs):  # missing_values="drop": a served row always gets an answer
            raise ValueError("request: rows with empty values cannot be scored (missing_values)")
        return list(self.transform(frame, "request")[0])

    def _plain_rows(self, rows: Sequence[dict]) -> torch.Tensor | None:
        """:meth:`transform` of rows that need none of its checks or fills, without pandas (a
        served request's rows: pandas costs ~15 ms a call, this ~20 us a row): every numeric
        value a finite number, every yes/no value yes or no, no value missing. ``None`` for
        anything else: :meth:`transform` then decides, and words its errors. The same numbers
        as :meth:`transform` (tested)."""
        state = self.state
        empty = {"", *(self.na_values or [])}
        numeric = np.empty((len(rows), len(state["numeric"])), dtype=np.float64)
        binary = np.empty((len(rows), len(state["binary"])), dtype=np.float64)
        categories = list(state["categories"].items())
        codes = np.zeros((len(rows), len(categories)), dtype=np.int64)
        lookups = self.category_codes
        for r, row in enumerate(rows):
            for c, column in enumerate(state["numeric"]):
                value = row.get(column)
                if (
                    type(value) not in (int, float)
                    or not math.isfinite(value)
                    or abs(value) > 1e150
                ):
                    return None
                numeric[r, c] = value
            for c, column in enumerate(state["binary"]):
                value = row.get(column)
                if not isinstance(value, str) or value in empty:
                    return None
                code = YES_NO.get(value.strip().lower())
                if code is None:
                    return None
                binary[r, c] = code
            for c, (column, _) in enumerate(categories):
                value = row.get(column)
                if value is None or value in empty or isinstance(value, float):
                    return None
                codes[r, c] = lookups[column].get(str(value), 0)
        parts = [(numeric - state["mean"]) / state["scale"]] if state["numeric"] else []
        if state["binary"]:
            parts.append(binary)
        for c, (column, known) in enumerate(categories):
            unseen = int((codes[:, c] == 0).sum())
            if unseen:
                log.info(
                    "request: %d value(s) of %r not seen in training, mapped to %s",
                    unseen,
                    column,
                    UNKNOWN,
                )
            one_hot = np.zeros((len(rows), len(known) + 1), dtype=np.float32)
            one_hot[np.arange(len(rows)), codes[:, c]] = 1.0
            parts.append(one_hot)
        return torch.from_numpy(np.concatenate(parts, axis=1, dtype=np.float32))

    def collate(self, items: Sequence[torch.Tensor]) -> torch.Tensor:
        """Encoded rows as the model's input batch ``(N, num_features)``."""
        return torch.stack(list(items))

    def bundle_args(self) -> dict[str, Any]:
        # the numeric quantiles are the model's (its bins are in its weights), not serving's
        state = {k: v for k, v in self.state.items() if k != "quantiles"}
        return {
            "state": state,
            "missing_values": self.missing_values,
            "na_values": self.na_values,
        }

    def describe(self, directory: Path) -> dict[str, Any]:
        """What a caller outside dlzoo needs to turn a row into the model's input (for a bundle's
        JSON): column kinds in feature order, scaler statistics, fill values, category lists."""
        state = self.state
        return {
            "kind": "tabular",
            "target": state["target"],
            "feature_names": state["feature_names"],
            "numeric": {
                "columns": state["numeric"],
                "mean": state["mean"],
                "scale": state["scale"],
                "fill": state["fill"],
                "formula": "(value - mean) / scale; an empty value becomes fill first",
            },
            "binary": {
                "columns": state["binary"],
                "values": YES_NO,
                "fill": state["binary_fill"],
            },
            "categorical": {
                "columns": list(state["categories"]),
                "categories": {c: [UNKNOWN, *v] for c, v in state["categories"].items()},
                "unknown_index": 0,
                "missing_category": MISSING if self.missing_values == "impute" else None,
                "formula": "one-hot over categories; a value never seen in training: index 0",
            },
            "missing_values": self.missing_values,
            "na_values": self.na_values or [],
            "targets": self.targets,
        }
