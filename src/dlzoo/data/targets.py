"""Targets: which task a target column poses, decided once from the data and said, and how its
values become the tensors a task's loss takes.

- one column of strings, booleans or a few distinct integers: classification (``binary`` for
  two classes, else ``multiclass``), classes in sorted order;
- one column of floats, or of integers with many distinct values (a price): ``regression``,
  standardised on the training split (optionally after ``log1p``), inverted at every output;
- several numeric columns: multi-target ``regression``;
- one column of label lists (``"drama|comedy"``) or several 0/1 columns: ``multilabel``.

``task=`` overrides the inference; an ambiguous column (integer ratings 1-10) is refused with
both readings named. The fitted state is plain lists, saved in checkpoints.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from dlzoo.tasks import TASKS, classification_task

log = logging.getLogger(__name__)

#: integer targets with at most this many distinct values are classes
MAX_INTEGER_CLASSES = 5
#: integer targets with more than this many distinct values are numbers
MIN_INTEGER_NUMBERS = 30
#: a yes/no column's values (a feature of a table, or a flag target)
YES_NO = {"yes": 1.0, "no": 0.0}
#: what a flag target (binary or multi-label, one column per label) may hold
_FLAGS = {"0": 0.0, "1": 1.0, "0.0": 0.0, "1.0": 1.0, "false": 0.0, "true": 1.0, **YES_NO}

Lines = Callable[[pd.Index], str]


def _cell(value: Any) -> Any:
    """A cell as a user reads it: ``395``, not ``np.int64(395)``."""
    return value.item() if isinstance(value, np.generic) else value


def _shown(values: Sequence[Any], limit: int = 5) -> str:
    values = list(values)
    head = ", ".join(repr(v) for v in values[:limit])
    return head + (f" ... ({len(values)} in all)" if len(values) > limit else "")


def _is_flags(series: pd.Series) -> bool:
    values = set(series.dropna().astype(str).str.strip().str.lower())
    return bool(values) and values <= set(_FLAGS)


def _numbers(series: pd.Series) -> pd.Series | None:
    """The column as numbers if every non-empty cell is one (booleans are not numbers here)."""
    if pd.api.types.is_bool_dtype(series):
        return None
    parsed = pd.to_numeric(series, errors="coerce")
    return parsed if parsed.notna().sum() == series.notna().sum() else None


def infer_task(frame: pd.DataFrame, columns: Sequence[str], delimiter: str) -> tuple[str, str]:
    """The task ``columns`` of ``frame`` pose, and why (for the log line)."""
    if len(columns) > 1:
        if all(_is_flags(frame[c]) for c in columns):
            return "multilabel", f"{len(columns)} columns of 0/1 values, one per label"
        if all(_numbers(frame[c]) is not None for c in columns):
            return "regression", f"{len(columns)} numeric columns, one output each"
        raise ValueError(
            f"target columns {list(columns)} mix kinds: several targets are either all numeric "
            "(multi-target regression) or all 0/1 (multi-label); set task to say which"
        )
    (column,) = columns
    series = frame[column].dropna()
    numbers = _numbers(series)
    if numbers is None:
        text = series.astype(str)
        if delimiter and text.str.contains(delimiter, regex=False).any():
            return "multilabel", f"label lists separated by {delimiter!r}"
        count = text.nunique()
        return classification_task(count), f"{count} distinct text values"
    count = numbers.nunique()
    if not (numbers % 1 == 0).all():
        return "regression", f"numbers with fractions, {count} distinct values"
    if count <= MAX_INTEGER_CLASSES:
        return classification_task(max(count, 2)), f"{count} distinct integers"
    if count > MIN_INTEGER_NUMBERS:
        return "regression", f"integers with {count} distinct values"
    low, high = numbers.min(), numbers.max()
    raise ValueError(
        f"target {column!r} holds {count} distinct integers ({low:g} to {high:g}): a class each "
        f"(task: multiclass) or a number to predict (task: regression)? Set task to say which"
    )


def decide_task(
    option: str | None,
    frame: pd.DataFrame,
    columns: Sequence[str],
    delimiter: str,
    source: str,
    logger: logging.Logger = log,
) -> str:
    """The task: ``option`` (a DataModule's ``task``) if given, else the one ``columns`` pose;
    said once on ``logger``, with why (``source`` names where the targets come from)."""
    if option is not None:
        logger.info("task: %s (set by task)", option)
        return option
    task, why = infer_task(frame, columns, delimiter)
    logger.info("task: %s, from %s: %s (task: ... overrides)", task, source, why)
    return task


def _label_lists(series: pd.Series, delimiter: str) -> pd.Series:
    return series.astype(str).map(
        lambda cell: sorted({part.strip() for part in cell.split(delimiter) if part.strip()})
    )


def fit_targets(
    train: pd.DataFrame,
    columns: Sequence[str],
    task: str,
    delimiter: str = "|",
    log_target: bool = False,
    where: str = "training data",
    lines: Lines = str,
) -> dict[str, Any]:
    """The fitted state of the targets on the training rows: classes, labels or scaling."""
    state: dict[str, Any] = {"task": task, "columns": list(columns), "delimiter": delimiter}
    if TASKS[task].classification:
        (column,) = columns
        labels = train[column]
        # sorted by value, so numeric classes keep their order (2 before 10) and no/yes is 0/1
        state["classes"] = as_labels(pd.Series(sorted(labels.unique()))).tolist()
        if len(state["classes"]) < 2:
            raise ValueError(
                f"target column {column!r} has a single class: {state['classes'][0]!r}"
            )
    elif task == "multilabel":
        if len(columns) > 1:
            state["classes"], state["delimiter"] = list(columns), None
        else:
            lists = _label_lists(train[columns[0]], delimiter)
            state["classes"] = sorted({label for labels in lists for label in labels})
        if len(state["classes"]) < 2:
            raise ValueError(
                f"a multi-label target needs two labels or more, found {state['classes']}"
            )
    elif task == "regression":
        values = numeric_targets(train, columns, where, lines)
        if log_target:
            negative = (values < 0).any(axis=0)
            if negative.any():
                column = columns[int(np.argmax(negative))]
                raise ValueError(
                    f"{where}: target {column!r} has negative values: log_target needs "
                    "values of 0 or more"
                )
            values = np.log1p(values)
        scale = values.std(axis=0)
        state["transform"] = {
            "mean": values.mean(axis=0).tolist(),
            "scale": np.where(scale > 0, scale, 1.0).tolist(),
            "log": [bool(log_target)] * len(columns),
        }
    else:
        raise ValueError(f"task {task!r} takes no target column")
    return state


def numeric_targets(
    frame: pd.DataFrame, columns: Sequence[str], where: str, lines: Lines
) -> np.ndarray:
    """``(rows, targets)`` float64 values, refusing text and non-finite cells by line."""
    out = []
    for column in columns:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = frame.index[values.isna() & frame[column].notna()]
        if len(bad):
            raise ValueError(
                f"{where}: regression target {column!r} is not a number on {lines(bad)}, e.g. "
                f"{_cell(frame[column][bad[0]])!r}; fix those cells, or set task to a classification"
            )
        infinite = frame.index[~np.isfinite(values.to_numpy(np.float64)) & values.notna()]
        if len(infinite):
            raise ValueError(
                f"{where}: regression target {column!r} is infinite on {lines(infinite)}"
            )
        out.append(values.to_numpy(np.float64))
    return np.stack(out, axis=1)


def encode_targets(
    frame: pd.DataFrame, state: dict[str, Any], where: str, lines: Lines
) -> torch.Tensor:
    """The targets of ``frame`` as the task's loss takes them: class indices ``(N,)``, 0/1
    labels ``(N, L)`` or standardised values ``(N, T)``."""
    task, columns = state["task"], state["columns"]
    if TASKS[task].classification:
        (column,) = columns
        codes = pd.Index(state["classes"]).get_indexer(as_labels(frame[column]))
        bad = frame.index[codes < 0]
        if len(bad):
            classes = state["classes"]
            hint = "; if the target is a number to predict, set task: regression"
            raise ValueError(
                f"{where}: target value {_cell(frame[column][bad[0]])!r} on {lines(bad)} is not one of "
                f"the training classes: {_shown(classes)}"
                + (hint if len(classes) > MAX_INTEGER_CLASSES else "")
            )
        return torch.from_numpy(codes.astype(np.int64))
    if task == "multilabel":
        labels = state["classes"]
        if state.get("delimiter") is None:  # one 0/1 column per label
            out = np.zeros((len(frame), len(labels)), dtype=np.float32)
            for i, column in enumerate(columns):
                text = frame[column].astype(str).str.strip().str.lower()
                bad = frame.index[~text.isin(list(_FLAGS))]
                if len(bad):
                    raise ValueError(
                        f"{where}: label column {column!r} should be 0 or 1, found "
                        f"{_cell(frame[column][bad[0]])!r} on {lines(bad)}"
                    )
                out[:, i] = text.map(_FLAGS).to_numpy(np.float32)
            return torch.from_numpy(out)
        lists = _label_lists(frame[columns[0]], state["delimiter"])
        index = {label: i for i, label in enumerate(labels)}
        out = np.zeros((len(frame), len(labels)), dtype=np.float32)
        for row, (position, chosen) in enumerate(zip(frame.index, lists, strict=True)):
            unknown = [label for label in chosen if label not in index]
            if unknown:
                raise ValueError(
                    f"{where}: label {unknown[0]!r} on {lines(pd.Index([position]))} was never "
                    f"seen in training (labels: {_shown(labels)})"
                )
            out[row, [index[label] for label in chosen]] = 1.0
        return torch.from_numpy(out)
    values = numeric_targets(frame, columns, where, lines)
    transform = state["transform"]
    if any(transform["log"]):
        if (values < 0).any():
            raise ValueError(f"{where}: a log_target regression target is negative")
        values = np.log1p(values)
    scaled = (values - np.asarray(transform["mean"])) / np.asarray(transform["scale"])
    return torch.from_numpy(scaled.astype(np.float32))


def as_labels(series: pd.Series) -> pd.Series:
    """Class labels as text, so 1, 1.0 and "1" read the same in every file."""
    if pd.api.types.is_float_dtype(series) and (series.dropna() % 1 == 0).all():
        series = series.astype("Int64")
    return series.astype(str).where(series.notna())


__all__ = [
    "as_labels",
    "decide_task",
    "encode_targets",
    "fit_targets",
    "infer_task",
    "numeric_targets",
]
