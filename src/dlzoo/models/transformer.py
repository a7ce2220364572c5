"""The Transformer text model (the book's second seed):
:class:`~dlzoo.networks.transformer.TransformerNetwork` trained by
:class:`~dlzoo.models.base.TaskModule`."""

from __future__ import annotations

from typing import Any, Literal

from dlzoo.models.base import TaskModule
from dlzoo.models.rnn import load_embedding_vectors
from dlzoo.networks.transformer import TransformerNetwork
from dlzoo.registry import register_model


@register_model("transformer")
class TransformerClassifier(TaskModule):
    """A :class:`~dlzoo.networks.transformer.TransformerNetwork` for a task: token + learned
    positional embeddings -> ``nn.TransformerEncoder`` -> pooling -> linear.

    Pad tokens are masked out of attention (``src_key_padding_mask``) and out of the mean
    pooling, so extra padding never changes the output. Texts longer than ``max_length`` tokens
    are cut (set the DataModule's ``max_length`` to match).

    Args:
        vocab_size: vocabulary size (the DataModule supplies it).
        num_classes: 2 for binary (one logit), more for multiclass; labels of a multi-label task.
        pad_index: index of ``<pad>`` (the DataModule supplies it).
        embedding_dim: model width ``d_model``.
        num_heads: attention heads (must divide ``embedding_dim``).
        num_layers: encoder layers.
        feedforward_dim: hidden width of each layer's MLP.
        dropout: dropout in the encoder and before the output layer.
        max_length: positions the positional embedding covers.
        pooling: ``mean`` over real tokens, or ``cls`` (a learned token in front).
        pretrained_embeddings: a ``(vocab_size, embedding_dim)`` tensor file of word vectors.
        freeze_embeddings: keep the token embedding fixed.
        **kwargs: the task, optimiser, scheduler and L1 settings of :class:`TaskModule`.
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int = 2,
        pad_index: int = 1,
        embedding_dim: int = 128,
        num_heads: int = 4,
        num_layers: int = 2,
        feedforward_dim: int = 256,
        dropout: float = 0.1,
        max_length: int = 2000,
        pooling: Literal["mean", "cls"] = "mean",
        pretrained_embeddings: str | None = None,
        freeze_embeddings: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(network=None, num_classes=num_classes, **kwargs)
        self.network = TransformerNetwork(
            vocab_size, self.num_outputs, pad_index, embedding_dim, num_heads, num_layers,
            feedforward_dim, dropout, max_length, pooling, freeze_embeddings,
        )  # fmt: skip

    def load_pretrained(self) -> TransformerClassifier:
        return load_embedding_vectors(self)
