"""TabM with numeric-feature embeddings (:class:`~dlzoo.networks.tabm.TabMNetwork`, from the
``tabm`` and ``rtdl_num_embeddings`` packages) trained by :class:`~dlzoo.models.base.TaskModule`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dlzoo.data.tabular import TabularDataModule
from dlzoo.models.base import TaskModule
from dlzoo.models.optimization import OptimizerName
from dlzoo.networks.tabm import Architecture, Embedding, TabMNetwork, check_options
from dlzoo.registry import register_model


@register_model("tabm")
class TabMNet(TaskModule):
    """TabM for every tabular task: ``k`` members in one MLP, trained on the mean of their
    losses; ``predict``, export and serve return the mean of their predictions (probabilities
    for classes, values in the target's units for regression).

    The defaults are the paper's (``tabm`` 0.0.3's ``TabM.make`` and its example): k=32,
    width 512, dropout 0.1, piecewise-linear embeddings of 16 per numeric column over 48
    quantile bins, AdamW at lr 2e-3 with weight decay 3e-4.

    Args:
        num_features: width of a preprocessed row (the DataModule supplies it).
        num_classes: 2 for binary (one logit), more for multiclass; labels of a multi-label task.
        numeric_quantiles: the DataModule's fitted quantiles of each numeric column; the bins
            are taken from them. From Python pass ``dm.numeric_quantiles``; left out, the
            network is built when training starts, from the Trainer's DataModule
            (:meth:`configure_model`), or from a checkpoint's (they travel in it).
        embedding: ``piecewise``, ``periodic``, ``linear`` or ``none``.
        n_bins: piecewise-linear bins per numeric column (2 to 256).
        d_embedding: embedding width per numeric column.
        k: ensemble members.
        n_blocks: MLP depth (default: 2 with embeddings, else 3).
        d_block: MLP width.
        dropout: dropout after each block.
        arch_type: ``tabm``, ``tabm-mini`` or ``tabm-packed``.
        category_sizes: the one-hot width of each categorical column (the DataModule supplies
            it); TabM's first scaling treats each group as one column.
        d_categorical: embed each categorical column in this many dimensions (a learned
            vector per category); ``None``: one-hot, as the paper does.
        optimizer: as :class:`TaskModule`; AdamW here.
        lr: learning rate.
        weight_decay: AdamW's decoupled weight decay.
        **kwargs: the task, scheduler and L1 settings of :class:`TaskModule`.
    """

    ensemble = True

    def __init__(
        self,
        num_features: int,
        num_classes: int = 2,
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
        optimizer: OptimizerName = "adamw",
        lr: float = 2e-3,
        weight_decay: float = 3e-4,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            network=None, num_classes=num_classes, optimizer=optimizer, lr=lr,
            weight_decay=weight_decay, **kwargs,
        )  # fmt: skip
        # the quantiles are data, not a setting: they travel in the checkpoint beside the
        # weights (`numeric_quantiles`), not in the hyperparameters, which every config parse
        # copies many times over
        self.hparams.pop("numeric_quantiles", None)
        check_options(embedding, n_bins, d_embedding, k, n_blocks, d_block, dropout, arch_type)
        if d_categorical is not None and d_categorical < 1:
            raise ValueError(f"d_categorical must be at least 1 (or None), got {d_categorical}")
        self.numeric_quantiles: Sequence[Sequence[float]] | None = None
        if numeric_quantiles is not None or embedding == "none":
            self.build_network(numeric_quantiles or [])

    def build_network(self, numeric_quantiles: Sequence[Sequence[float]]) -> None:
        """Build the network for numeric columns with these training quantiles."""
        hp = self.hparams
        self.numeric_quantiles = [[float(v) for v in column] for column in numeric_quantiles]
        self.network = TabMNetwork(
            hp.num_features, self.num_outputs, self.numeric_quantiles, hp.embedding, hp.n_bins,
            hp.d_embedding, hp.k, hp.n_blocks, hp.d_block, hp.dropout, hp.arch_type,
            hp.category_sizes, hp.d_categorical,
        )  # fmt: skip

    def configure_model(self) -> None:
        """Trained by the dlzoo command: the bins come from the DataModule's training split
        (restored from the checkpoint for validate, test, predict and a resumed fit)."""
        if self.network is not None:
            return
        try:
            datamodule = self.trainer.datamodule
        except RuntimeError:  # no Trainer: load_from_checkpoint builds it in on_load_checkpoint
            return
        quantiles = (
            datamodule.numeric_quantiles if isinstance(datamodule, TabularDataModule) else None
        )
        if quantiles is None:
            raise ValueError(
                f"TabMNet with embedding={self.hparams.embedding!r} needs the training quantiles "
                "of the numeric columns: train it on a dlzoo TabularDataModule, pass "
                "numeric_quantiles=dm.numeric_quantiles, or set embedding='none'"
            )
        self.build_network(quantiles)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[QUANTILES_KEY] = self.numeric_quantiles

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        if self.network is None:
            quantiles = checkpoint.get(QUANTILES_KEY)
            if quantiles is None:
                raise ValueError(
                    f"the checkpoint holds no {QUANTILES_KEY!r}: it was not written by TabMNet"
                )
            self.build_network(quantiles)


#: where a checkpoint holds the quantiles a TabMNet's bins were taken from (plain lists)
QUANTILES_KEY = "numeric_quantiles"
