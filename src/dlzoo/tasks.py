"""The task table: what a model learns, one row per task.

A row says everything downstream needs to know about a task — the width of the network's output,
the loss (on logits, in fp32), what the raw outputs become at prediction time, the torchmetrics
collection, the metric to keep checkpoints by, and how predictions read in ``dlzoo predict``'s
CSV, the server's JSON and an export bundle. Models and DataModules carry ``task`` (a name of
:data:`TASKS`); nothing reads tensor shapes, dict keys or classes to learn it.

Adding a task is one :class:`Task` in :data:`TASKS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from dlzoo.metrics import (
    PerTarget,
    binary_metrics,
    multiclass_metrics,
    multilabel_metrics,
    reconstruction_metrics,
    regression_metrics,
)

TaskName = Literal["binary", "multiclass", "multilabel", "regression", "reconstruction"]
RegressionLoss = Literal["mse", "huber", "l1"]
Outputs = Mapping[str, torch.Tensor]
Row = dict[str, Any]


# ------------------------------------------------------------------------ target transform
def untransform(values: torch.Tensor, transform: Mapping[str, Any] | None) -> torch.Tensor:
    """Standardised regression targets (or outputs) back in the target's own units.

    ``transform`` is the DataModule's fitted ``target_transform``: ``mean`` and ``scale`` per
    target (of the log when ``log`` is true). ``None``: the values are already in those units.
    """
    values = values.float()
    if not transform:
        return values
    mean = torch.as_tensor(transform["mean"], dtype=torch.float32, device=values.device)
    scale = torch.as_tensor(transform["scale"], dtype=torch.float32, device=values.device)
    values = values * scale + mean
    logged = transform.get("log") or [False] * mean.numel()
    if any(logged):
        mask = torch.as_tensor(logged, device=values.device)
        # clamp: exp of a wild early-training output must not be inf in the metrics
        values = torch.where(mask, torch.expm1(values.clamp(max=80.0)), values)
    return values


# ------------------------------------------------------------------------------- losses
def _binary_loss(logits: torch.Tensor, target: torch.Tensor, hp: Mapping) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits.reshape(-1), target.float())


def _multiclass_loss(logits: torch.Tensor, target: torch.Tensor, hp: Mapping) -> torch.Tensor:
    return F.cross_entropy(logits, target)


def _multilabel_loss(logits: torch.Tensor, target: torch.Tensor, hp: Mapping) -> torch.Tensor:
    weight = hp.get("pos_weight")
    weight = torch.as_tensor(weight, dtype=torch.float32, device=logits.device) if weight else None
    return F.binary_cross_entropy_with_logits(logits, target.float(), pos_weight=weight)


def _reconstruction_loss(logits: torch.Tensor, target: torch.Tensor, hp: Mapping) -> torch.Tensor:
    # from the decoder's raw output: BCE takes logits (targets in [0, 1]); MSE the reconstruction
    logits, target = logits.float(), target.float()
    if hp.get("loss") == "bce":
        return F.binary_cross_entropy_with_logits(logits, target)
    return F.mse_loss(_reconstructed(logits, hp), target)


def _regression_loss(logits: torch.Tensor, target: torch.Tensor, hp: Mapping) -> torch.Tensor:
    # on standardised targets: every target weighs the same whatever its units
    target = target.float().reshape(logits.shape)
    name = hp.get("regression_loss", "mse")
    if name == "huber":
        return F.huber_loss(logits, target)
    if name == "l1":
        return F.l1_loss(logits, target)
    return F.mse_loss(logits, target)


# ------------------------------------------------------------------ outputs at predict time
def _binary_outputs(logits: torch.Tensor, hp: Mapping) -> dict[str, torch.Tensor]:
    probs = torch.sigmoid(logits.float().reshape(-1))
    return {"probs": probs, "preds": (probs >= 0.5).long()}


def _multiclass_outputs(logits: torch.Tensor, hp: Mapping) -> dict[str, torch.Tensor]:
    probs = logits.float().softmax(dim=-1)
    return {"probs": probs, "preds": probs.argmax(dim=-1)}


def _multilabel_outputs(logits: torch.Tensor, hp: Mapping) -> dict[str, torch.Tensor]:
    probs = torch.sigmoid(logits.float())
    return {"probs": probs, "preds": (probs >= hp.get("threshold", 0.5)).long()}


def _regression_outputs(logits: torch.Tensor, hp: Mapping) -> dict[str, torch.Tensor]:
    return {"prediction": untransform(logits, hp.get("target_transform"))}


def _reconstructed(logits: torch.Tensor, hp: Mapping) -> torch.Tensor:
    return torch.sigmoid(logits) if hp.get("output_activation") == "sigmoid" else logits


def _reconstruction_outputs(logits: torch.Tensor, hp: Mapping) -> dict[str, torch.Tensor]:
    # the code and the per-row error need the encoder: AutoEncoder.predict_outputs adds them
    return {"reconstruction": _reconstructed(logits.float(), hp)}


# ------------------------------------------------------------------- what metrics compare
def _scores(out: Outputs, target: torch.Tensor, hp: Mapping) -> tuple[torch.Tensor, torch.Tensor]:
    return out["probs"], target


def _label_scores(
    out: Outputs, target: torch.Tensor, hp: Mapping
) -> tuple[torch.Tensor, torch.Tensor]:
    return out["probs"], target.long()  # 0/1 floats for the loss, ints for the metrics


def _regression_scores(
    out: Outputs, target: torch.Tensor, hp: Mapping
) -> tuple[torch.Tensor, torch.Tensor]:
    # metrics in the target's own units (dollars, stars), as a user reads them
    target = untransform(target.reshape(out["prediction"].shape), hp.get("target_transform"))
    return out["prediction"], target


# ---------------------------------------------------------------------------- exported
def _probabilities(out: Outputs) -> dict[str, torch.Tensor]:
    probs = out["probs"]
    return {"probabilities": torch.stack([1 - probs, probs], dim=1) if probs.ndim == 1 else probs}


def _prediction(out: Outputs) -> dict[str, torch.Tensor]:
    return {"prediction": out["prediction"]}


def _reconstruction(out: Outputs) -> dict[str, torch.Tensor]:
    return {"reconstruction": out["reconstruction"], "latent": out["latent"], "error": out["mse"]}


def _from_probabilities(named: Outputs, hp: Mapping) -> Outputs:
    probs = named["probabilities"].float()  # hp["task"]: the task's name
    if hp["task"] == "binary":
        probs = probs[:, 1]
        return {"probs": probs, "preds": (probs >= 0.5).long()}
    if hp.get("task") == "multilabel":
        return {"probs": probs, "preds": (probs >= hp.get("threshold", 0.5)).long()}
    return {"probs": probs, "preds": probs.argmax(dim=-1)}


def _from_prediction(named: Outputs, hp: Mapping) -> Outputs:
    return {"prediction": named["prediction"]}


def _from_reconstruction(named: Outputs, hp: Mapping) -> Outputs:
    return {
        "reconstruction": named["reconstruction"],
        "latent": named["latent"],
        "mse": named["error"],
    }


# ------------------------------------------------------------------------------ decoding
def _names(names: Sequence[str] | None, count: int) -> list[str]:
    names = [str(n) for n in names or []]
    return names if len(names) == count else [str(i) for i in range(count)]


def _decode_classes(out: Outputs, names: Sequence[str] | None) -> list[Row]:
    probs = _probabilities(out)["probabilities"].float().cpu()
    classes = _names(names, probs.shape[1])
    return [
        {"label": classes[pred], "probabilities": dict(zip(classes, p, strict=True))}
        for p, pred in zip(probs.tolist(), out["preds"].tolist(), strict=True)
    ]


def _decode_labels(out: Outputs, names: Sequence[str] | None) -> list[Row]:
    probs = out["probs"].float().cpu()
    labels = _names(names, probs.shape[1])
    return [
        {
            "labels": [label for label, on in zip(labels, chosen, strict=True) if on],
            "probabilities": dict(zip(labels, p, strict=True)),
        }
        for p, chosen in zip(probs.tolist(), out["preds"].tolist(), strict=True)
    ]


def _decode_values(out: Outputs, names: Sequence[str] | None) -> list[Row]:
    values = out["prediction"].float().cpu().reshape(len(out["prediction"]), -1)
    targets = _names(names, values.shape[1])
    if values.shape[1] == 1:
        return [{"prediction": v[0]} for v in values.tolist()]
    return [{"prediction": dict(zip(targets, v, strict=True))} for v in values.tolist()]


def _decode_codes(out: Outputs, names: Sequence[str] | None) -> list[Row]:
    return [
        {"reconstruction_error": float(e), "latent": z}
        for e, z in zip(out["mse"].float().tolist(), out["latent"].float().tolist(), strict=True)
    ]


# ------------------------------------------------------------------------ CSV columns
def _f(value: float) -> str:
    return f"{value:.6f}"


def _csv_binary(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    # the book's single column: the probability of the positive class
    positive = list(rows[0]["probabilities"])[1]
    return [f"prob_{positive}", "label"], [
        [_f(r["probabilities"][positive]), r["label"]] for r in rows
    ]


def _csv_classes(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    classes = list(rows[0]["probabilities"])
    return [*(f"prob_{c}" for c in classes), "label"], [
        [*(_f(r["probabilities"][c]) for c in classes), r["label"]] for r in rows
    ]


def _csv_labels(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    labels = list(rows[0]["probabilities"])
    return [*(f"prob_{c}" for c in labels), "labels"], [
        [*(_f(r["probabilities"][c]) for c in labels), "|".join(r["labels"])] for r in rows
    ]


def _csv_values(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    first = rows[0]["prediction"]
    if not isinstance(first, dict):
        return ["prediction"], [[_f(r["prediction"])] for r in rows]
    return [f"prediction_{t}" for t in first], [
        [_f(v) for v in r["prediction"].values()] for r in rows
    ]


def _csv_codes(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    width = len(rows[0]["latent"])
    return ["mse", *(f"z{i}" for i in range(width))], [
        [_f(r["reconstruction_error"]), *(_f(v) for v in r["latent"])] for r in rows
    ]


# ----------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class Task:
    """One row of the task table. ``hp`` below is a model's hyperparameters."""

    name: str
    #: the network's output width
    output_width: Callable[[Mapping[str, Any]], int]
    #: loss from logits and the DataModule's targets (fp32)
    loss: Callable[[torch.Tensor, torch.Tensor, Mapping[str, Any]], torch.Tensor]
    #: logits -> what ``predict_step`` returns (probabilities, labels, values in target units)
    outputs: Callable[[torch.Tensor, Mapping[str, Any]], dict[str, torch.Tensor]]
    #: the torchmetrics collection logged per epoch
    metrics: Callable[[Mapping[str, Any]], Any]
    #: ``(predict outputs, batch targets) -> (what metrics compare)``
    scores: Callable[[Outputs, torch.Tensor, Mapping[str, Any]], tuple]
    #: the metric ModelCheckpoint keeps by, and its direction
    monitor: tuple[str, Literal["min", "max"]]
    #: metrics shown in the progress bar
    shown: tuple[str, ...]
    #: ``predict_step`` outputs -> the exported network's named outputs
    exported: Callable[[Outputs], dict[str, torch.Tensor]]
    #: the names of those outputs, in order
    output_names: tuple[str, ...]
    #: ``(the exported outputs, hp) -> predict_step outputs``: an exported model's answers
    #: decoded by the same ``decode`` (ONNX Runtime serving)
    imported: Callable[[Outputs, Mapping[str, Any]], Outputs]
    #: ``predict_step`` outputs and class / label / target names -> one JSON row per input
    decode: Callable[[Outputs, Sequence[str] | None], list[Row]]
    #: decoded rows -> a CSV header and its cells
    csv: Callable[[list[Row]], tuple[list[str], list[list[str]]]]
    #: targets are class indices (stratified splits, confusion matrices)
    classification: bool = False
    #: the target is the input itself (a batch holds no separate targets)
    target_is_input: bool = False


def _num_classes(hp: Mapping[str, Any]) -> int:
    return int(hp["num_classes"])


#: what every task whose outputs are probabilities shares: the checkpoint monitor and the
#: exported outputs
_PROBABILITIES: dict[str, Any] = {
    "monitor": ("val_auroc", "max"),
    "exported": _probabilities,
    "output_names": ("probabilities",),
    "imported": _from_probabilities,
}
#: and what the two class tasks (one class per input) share besides
_CLASSES: dict[str, Any] = {
    **_PROBABILITIES,
    "scores": _scores,
    "shown": ("val_acc", "val_auroc", "test_acc", "test_auroc"),
    "decode": _decode_classes,
    "classification": True,
}

TASKS: dict[str, Task] = {
    "binary": Task(
        name="binary",
        output_width=lambda hp: 1,
        loss=_binary_loss,
        outputs=_binary_outputs,
        metrics=binary_metrics,
        csv=_csv_binary,
        **_CLASSES,
    ),
    "multiclass": Task(
        name="multiclass",
        output_width=_num_classes,
        loss=_multiclass_loss,
        outputs=_multiclass_outputs,
        metrics=multiclass_metrics,
        csv=_csv_classes,
        **_CLASSES,
    ),
    "multilabel": Task(
        name="multilabel",
        output_width=_num_classes,
        loss=_multilabel_loss,
        outputs=_multilabel_outputs,
        metrics=multilabel_metrics,
        scores=_label_scores,
        shown=("val_f1_macro", "val_auroc", "test_f1_macro", "test_auroc"),
        decode=_decode_labels,
        csv=_csv_labels,
        **_PROBABILITIES,
    ),
    "regression": Task(
        name="regression",
        output_width=lambda hp: int(hp.get("num_targets") or 1),
        loss=_regression_loss,
        outputs=_regression_outputs,
        metrics=regression_metrics,
        scores=_regression_scores,
        monitor=("val_rmse", "min"),
        shown=("val_rmse", "val_mae", "test_rmse", "test_mae"),
        exported=_prediction,
        output_names=("prediction",),
        imported=_from_prediction,
        decode=_decode_values,
        csv=_csv_values,
    ),
    "reconstruction": Task(
        name="reconstruction",
        output_width=lambda hp: 0,
        loss=_reconstruction_loss,
        outputs=_reconstruction_outputs,
        metrics=reconstruction_metrics,
        scores=lambda out, target, hp: (out["reconstruction"], target),
        monitor=("val_loss", "min"),
        shown=("val_loss", "val_mse"),
        exported=_reconstruction,
        output_names=("reconstruction", "latent", "error"),
        imported=_from_reconstruction,
        decode=_decode_codes,
        csv=_csv_codes,
        target_is_input=True,
    ),
}


def member_mean_outputs(task: Task, logits: torch.Tensor, hp: Mapping) -> Outputs:
    """The outputs of an ensemble's ``(N, k, width)`` logits: the mean of the ``k`` members'
    predictions (probabilities for classes and labels, values in the target's units), the
    labels taken from the mean probabilities."""
    rows, members = logits.shape[:2]
    named = task.exported(task.outputs(logits.flatten(0, 1), hp))
    mean = {
        name: value.reshape(rows, members, *value.shape[1:]).mean(dim=1)
        for name, value in named.items()
    }
    return task.imported(mean, {**hp, "task": task.name})


def member_mean_loss(task: Task, logits: torch.Tensor, target: torch.Tensor, hp: Mapping):
    """The mean of the ``k`` members' losses of ``(N, k, width)`` logits (each member's is the
    mean over the batch, so this is the loss of every member's row against its target)."""
    members = logits.shape[1]
    return task.loss(logits.flatten(0, 1), target.repeat_interleave(members, dim=0), hp)


def get_task(name: str) -> Task:
    """The row of :data:`TASKS` called ``name``; an unknown name lists the known ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; tasks are: {', '.join(TASKS)}") from None


def classification_task(num_classes: int) -> str:
    """``binary`` for two classes, else ``multiclass`` (what a class count alone implies)."""
    return "binary" if num_classes == 2 else "multiclass"


__all__ = [
    "TASKS",
    "PerTarget",
    "RegressionLoss",
    "Task",
    "TaskName",
    "classification_task",
    "get_task",
    "untransform",
]
