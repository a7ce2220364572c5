"""TabM (Gorishniy, Kotelnikov, Babenko, ICLR 2025) with the numeric-feature embeddings of
"On Embeddings for Numerical Features" (Gorishniy et al., NeurIPS 2022), from their authors'
``tabm`` and ``rtdl_num_embeddings`` packages.

TabM is one MLP that holds ``k`` members (BatchEnsemble-style: the members share their weights
and differ by cheap per-member scalings); it returns ``(N, k, num_outputs)``, one row of logits
per member. :class:`~dlzoo.models.tabm.TabMNet` trains it on the mean of the members' losses
and predicts with the mean of their predictions, as the paper does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import rtdl_num_embeddings
import tabm
import torch
from torch import nn

from dlzoo.networks.layers import check_num_features

#: how the numeric columns (the leading ones of a dlzoo tabular row) enter the MLP
Embedding = Literal["piecewise", "periodic", "linear", "none"]
#: ``tabm``'s architectures: BatchEnsemble (the paper's TabM), its mini variant (one shared
#: scaling), and ``k`` independent MLPs packed in one (TabM-packed)
Architecture = Literal["tabm", "tabm-mini", "tabm-packed"]


def bins_from_quantiles(quantiles: Sequence[Sequence[float]], n_bins: int) -> list[torch.Tensor]:
    """Piecewise-linear bin edges per numeric column from its training quantiles at levels
    ``0, 1/L, ..., 1`` (a tabular DataModule's ``numeric_quantiles``: L = 256): those at
    ``0, 1/n_bins, ..., 1``, the bins of ``rtdl_num_embeddings.compute_bins`` (exactly so when
    ``n_bins`` divides L, else the nearest level), repeated edges merged. A column with a
    single value in training gets two unit bins around it."""
    bins = []
    for column, levels in enumerate(quantiles):
        steps = len(levels) - 1
        if not 2 <= n_bins <= steps:
            raise ValueError(
                f"n_bins must be from 2 to {steps} (the quantile levels of numeric column "
                f"{column}), got {n_bins}"
            )
        picked = [levels[round(j * steps / n_bins)] for j in range(n_bins + 1)]
        edges = torch.tensor(picked, dtype=torch.float32).unique()  # sorted
        if len(edges) < 2:
            edges = edges[0] + torch.tensor([-1.0, 0.0, 1.0])
        bins.append(edges)
    return bins


def check_options(
    embedding: str,
    n_bins: int,
    d_embedding: int,
    k: int,
    n_blocks: int | None,
    d_block: int,
    dropout: float,
    arch_type: str,
) -> None:
    """Refuse, in one line each, options no TabM can be built with (before any data is read)."""
    if embedding not in Embedding.__args__:
        raise ValueError(f"embedding must be one of {Embedding.__args__}, got {embedding!r}")
    if arch_type not in Architecture.__args__:
        raise ValueError(f"arch_type must be one of {Architecture.__args__}, got {arch_type!r}")
    for name, value in (("k", k), ("d_block", d_block), ("d_embedding", d_embedding)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a whole number of at least 1, got {value!r}")
    if n_blocks is not None and n_blocks < 1:
        raise ValueError(f"n_blocks must be at least 1, got {n_blocks}")
    if not isinstance(n_bins, int) or n_bins < 2:
        raise ValueError(f"n_bins must be a whole number of at least 2, got {n_bins!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")


class TabMNetwork(nn.Module):
    """TabM on a dlzoo tabular row: ``(N, num_features) -> (N, k, num_outputs)`` logits.

    A :class:`~dlzoo.data.TabularDataModule` lays a row out as the standardised numeric columns,
    the yes/no columns, then one one-hot group per categorical column. The first
    ``len(numeric_quantiles)`` features are embedded (``embedding``); each categorical column's
    one-hot group enters the MLP as it is, or as a learned vector of ``d_categorical`` per
    category (a one-hot group times its table is that lookup); yes/no columns as they are.

    Args:
        num_features: width of a preprocessed row.
        num_outputs: width of the output (1 for a binary task, the classes, the targets).
        numeric_quantiles: per numeric column, its 257 training quantiles (the DataModule's
            ``numeric_quantiles``); the piecewise-linear bins are taken from them. Empty or
            ``None``: no numeric column is embedded.
        embedding: ``piecewise`` (piecewise-linear, the paper's best with TabM), ``periodic``,
            ``linear`` (linear + ReLU) or ``none``.
        n_bins: piecewise-linear bins per numeric column (2 to 256 with a DataModule's quantiles).
        d_embedding: embedding width per numeric column.
        k: ensemble members.
        n_blocks: MLP depth; default 2 with embeddings, 3 without (the package's defaults).
        d_block: MLP width.
        dropout: dropout after each block.
        arch_type: ``tabm``, ``tabm-mini`` or ``tabm-packed``.
        category_sizes: the width of each categorical column's one-hot group, in row order (the
            last features; the DataModule's ``category_sizes``). ``None``: no groups known.
        d_categorical: embed each categorical column in this many dimensions; ``None``: one-hot.
    """

    def __init__(
        self,
        num_features: int,
        num_outputs: int,
        numeric_quantiles: Sequence[Sequence[float]] | None = None,
        embedding: Embedding = "piecewise",
        n_bins: int = 48,
        d_embedding: int = 16,
        k: int = 32,
        n_blocks: int | None = None,
        d_block: int = 512,
        dropout: float = 0.1,
        arch_type: Architecture = "tabm",
        category_sizes: Sequence[int] | None = None,
        d_categorical: int | None = None,
    ) -> None:
        super().__init__()
        check_num_features(num_features)
        check_options(embedding, n_bins, d_embedding, k, n_blocks, d_block, dropout, arch_type)
        if d_categorical is not None and d_categorical < 1:
            raise ValueError(f"d_categorical must be at least 1 (or None), got {d_categorical}")
        sizes = [int(size) for size in category_sizes or []]
        if d_categorical is not None and category_sizes is None:
            raise ValueError(
                "d_categorical needs category_sizes: the dlzoo command links them from the "
                "tabular DataModule; from Python pass dm.category_sizes"
            )
        numeric = len(numeric_quantiles or []) if embedding != "none" else 0
        if numeric + sum(sizes) > num_features:
            raise ValueError(
                f"numeric_quantiles ({numeric} columns) and category_sizes ({sum(sizes)} "
                f"features) do not fit a row of {num_features} features: they come from "
                "different data"
            )
        self.num_numeric = numeric
        self.embeddings: nn.Module | None = None
        if numeric and embedding == "piecewise":
            self.embeddings = rtdl_num_embeddings.PiecewiseLinearEmbeddings(
                bins_from_quantiles(numeric_quantiles, n_bins),
                d_embedding,
                activation=False,
                version="B",
            )
        elif numeric and embedding == "periodic":
            self.embeddings = rtdl_num_embeddings.PeriodicEmbeddings(
                numeric, d_embedding, lite=False
            )
        elif numeric and embedding == "linear":
            self.embeddings = rtdl_num_embeddings.LinearReLUEmbeddings(numeric, d_embedding)
        embedded = self.embeddings is not None
        self.categorical_start = num_features - sum(sizes)
        self.groups = []  # (start, stop) of each one-hot group
        for size in sizes:
            start = self.groups[-1][1] if self.groups else self.categorical_start
            self.groups.append((start, start + size))
        self.category_tables = (
            nn.ModuleList(nn.Linear(size, d_categorical, bias=False) for size in sizes)
            if d_categorical is not None and sizes
            else None
        )
        # the parts of a row, and the chunks TabM's first scaling is initialised by (one per
        # column: an embedded column's whole width, a one-hot group as one)
        plain = self.categorical_start - (numeric if embedded else 0)
        chunks = [d_embedding] * numeric if embedded else []
        chunks += [1] * plain
        chunks += [d_categorical] * len(sizes) if self.category_tables is not None else sizes
        packed = arch_type == "tabm-packed"
        self.ensemble_view = tabm.EnsembleView(k=k)
        self.backbone = tabm.make_tabm_backbone(
            d_in=sum(chunks),
            n_blocks=n_blocks or (2 if embedded else 3),
            d_block=d_block,
            dropout=dropout,
            k=k,
            arch_type=arch_type,
            start_scaling_init=None if packed else ("normal" if embedded else "random-signs"),
            start_scaling_init_chunks=None if packed else chunks,
        )
        self.output = tabm.LinearEnsemble(d_block, num_outputs, k=k)

    @property
    def k(self) -> int:
        """The number of ensemble members."""
        return self.backbone.k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = []
        first = 0
        if self.embeddings is not None:
            parts.append(self.embeddings(x[:, : self.num_numeric]).flatten(1))
            first = self.num_numeric
        if self.category_tables is None:
            parts.append(x[:, first:])
        else:
            parts.append(x[:, first : self.categorical_start])
            for (start, stop), table in zip(self.groups, self.category_tables, strict=True):
                parts.append(table(x[:, start:stop]))  # the learned vector of its category
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        return self.output(self.backbone(self.ensemble_view(x)))
