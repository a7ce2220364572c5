"""The metrics of the task table's rows: torchmetrics collections, built on first use.

torchmetrics is imported inside each builder: a served bundle decodes outputs with the task
table and needs none of it (importing it costs seconds).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from torchmetrics import MetricCollection


# ----------------------------------------------------------------------------- metrics
class PerTarget(nn.Module):
    """A metric collection per regression target, plus each metric averaged over targets.

    ``compute()`` gives ``rmse`` (the mean over targets) and, with several targets,
    ``rmse_<target>`` for each. The same small API as :class:`~torchmetrics.MetricCollection`
    that :class:`~dlzoo.models.base.TaskModule` uses: ``update``, ``compute``, ``reset``,
    ``clone(prefix)``.
    """

    def __init__(self, make: Callable[[], MetricCollection], names: Sequence[str], prefix=""):
        super().__init__()
        self.names, self.prefix, self._make = list(names), prefix, make
        self.targets = nn.ModuleList(make() for _ in self.names)

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        preds, target = preds.reshape(len(preds), -1), target.reshape(len(target), -1)
        for column, metrics in enumerate(self.targets):
            metrics.update(preds[:, column], target[:, column])

    def compute(self) -> dict[str, torch.Tensor]:
        per_target = [metrics.compute() for metrics in self.targets]
        out = {}
        for key in per_target[0]:
            out[f"{self.prefix}{key}"] = torch.stack([m[key] for m in per_target]).mean()
            if len(self.names) > 1:
                for name, values in zip(self.names, per_target, strict=True):
                    out[f"{self.prefix}{key}_{name}"] = values[key]
        return out

    def reset(self) -> None:
        for metrics in self.targets:
            metrics.reset()

    def clone(self, prefix: str = "") -> PerTarget:
        return PerTarget(self._make, self.names, prefix)


# torchmetrics is imported where metrics are built: a served bundle decodes outputs with this
# table and needs none (importing it costs seconds)
def binary_metrics(hp: Mapping[str, Any]) -> MetricCollection:
    from torchmetrics import MetricCollection
    from torchmetrics.classification import (
        BinaryAccuracy,
        BinaryAUROC,
        BinaryF1Score,
        BinaryPrecision,
        BinaryRecall,
    )

    return MetricCollection(
        {
            "acc": BinaryAccuracy(),
            "precision": BinaryPrecision(),
            "recall": BinaryRecall(),
            "f1": BinaryF1Score(),
            "auroc": BinaryAUROC(),
        }
    )


def multiclass_metrics(hp: Mapping[str, Any]) -> MetricCollection:
    from torchmetrics import MetricCollection
    from torchmetrics.classification import (
        MulticlassAccuracy,
        MulticlassAUROC,
        MulticlassF1Score,
        MulticlassPrecision,
        MulticlassRecall,
    )

    n = hp["num_classes"]
    # accuracy over all rows (micro), the other scores averaged over classes (macro)
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(n, average="micro"),
            "precision": MulticlassPrecision(n, average="macro"),
            "recall": MulticlassRecall(n, average="macro"),
            "f1": MulticlassF1Score(n, average="macro"),
            "auroc": MulticlassAUROC(n, average="macro"),
        }
    )


def multilabel_metrics(hp: Mapping[str, Any]) -> MetricCollection:
    from torchmetrics import MetricCollection
    from torchmetrics.classification import (
        MultilabelAUROC,
        MultilabelExactMatch,
        MultilabelF1Score,
        MultilabelHammingDistance,
    )

    n, threshold = hp["num_classes"], hp.get("threshold", 0.5)
    return MetricCollection(
        {
            "exact_match": MultilabelExactMatch(n, threshold=threshold),
            "f1_micro": MultilabelF1Score(n, threshold=threshold, average="micro"),
            "f1_macro": MultilabelF1Score(n, threshold=threshold, average="macro"),
            "hamming": MultilabelHammingDistance(n, threshold=threshold),
            "auroc": MultilabelAUROC(n, average="macro"),
        }
    )


def regression_metrics(hp: Mapping[str, Any]) -> PerTarget:
    def make() -> MetricCollection:
        from torchmetrics import MetricCollection
        from torchmetrics.regression import (
            MeanAbsoluteError,
            MeanAbsolutePercentageError,
            MeanSquaredError,
            R2Score,
        )

        return MetricCollection(
            {
                "mse": MeanSquaredError(),
                "rmse": MeanSquaredError(squared=False),
                "mae": MeanAbsoluteError(),
                "mape": MeanAbsolutePercentageError(),
                "r2": R2Score(),
            }
        )

    names = hp.get("target_names") or [str(i) for i in range(hp.get("num_targets", 1))]
    return PerTarget(make, names)


def reconstruction_metrics(hp: Mapping[str, Any]) -> MetricCollection:
    from torchmetrics import MetricCollection
    from torchmetrics.regression import MeanSquaredError

    return MetricCollection({"mse": MeanSquaredError()})


__all__ = [
    "PerTarget",
    "binary_metrics",
    "multiclass_metrics",
    "multilabel_metrics",
    "reconstruction_metrics",
    "regression_metrics",
]
