"""The recurrent text models (book chapter 7): :class:`~dlzoo.networks.rnn.RNNNetwork` and
:class:`~dlzoo.networks.rnn.ImprovedRNNNetwork` trained by :class:`~dlzoo.models.base.TaskModule`.

Both take ``(tokens, lengths)``: ``tokens`` ``(N, T)`` padded with ``pad_index``, ``lengths``
``(N,)`` (computed from the padding when omitted). The DataModule links ``vocab_size``,
``pad_index`` and ``pretrained_embeddings`` (vectors aligned to its vocabulary).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from dlzoo.models.base import TaskModule
from dlzoo.networks.layers import run_recurrent, token_lengths
from dlzoo.networks.rnn import ImprovedRNNNetwork, PaddedLSTM, RNNNetwork, load_vectors
from dlzoo.registry import register_model


def load_embedding_vectors(model: TaskModule) -> TaskModule:
    """``load_pretrained`` of the text models: the ``(vocab_size, dim)`` tensor file named by
    ``hparams.pretrained_embeddings`` into the network's ``embedding`` (pad row zeroed)."""
    if model.hparams.pretrained_embeddings:
        load_vectors(
            model.network.embedding, model.hparams.pretrained_embeddings, model.hparams.pad_index
        )
    model._pretrained_done = True
    return model


@register_model("rnn")
class RNNClassifier(TaskModule):
    """The book's vanilla RNN (Listing 7-4), an :class:`~dlzoo.networks.rnn.RNNNetwork`:
    embedding -> ``nn.RNN`` -> last hidden state -> linear.

    It reads padded batches as they are, pad tokens included, as the book did; on IMDB it stays
    near 50 % (the book's point: a plain RNN forgets over hundreds of steps).

    Args:
        vocab_size: vocabulary size (the DataModule supplies it).
        num_classes: 2 for binary (one logit), more for multiclass; labels of a multi-label task.
        pad_index: index of ``<pad>``.
        embedding_dim: width of the word embedding.
        hidden_size: RNN state width.
        **kwargs: the task, optimiser, scheduler and L1 settings of :class:`TaskModule`.
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int = 2,
        pad_index: int = 1,
        embedding_dim: int = 100,
        hidden_size: int = 256,
        **kwargs: Any,
    ) -> None:
        super().__init__(network=None, num_classes=num_classes, **kwargs)
        self.network = RNNNetwork(vocab_size, self.num_outputs, embedding_dim, hidden_size)


@register_model("improved_rnn")
class ImprovedRNN(TaskModule):
    """The book's ImprovedRNN (Listing 7-9), an :class:`~dlzoo.networks.rnn.ImprovedRNNNetwork`:
    a 2-layer bidirectional LSTM over packed sequences.

    Embedding (padding index, optionally from pretrained vectors, optionally frozen) ->
    LSTM (packed, so pad tokens are never read) -> final forward and backward states of the last
    layer, concatenated -> dropout -> linear.

    Args:
        vocab_size: vocabulary size (the DataModule supplies it).
        num_classes: 2 for binary (one logit), more for multiclass; labels of a multi-label task.
        pad_index: index of ``<pad>`` (the DataModule supplies it).
        embedding_dim: width of the word embedding (300 for fastText/GloVe-300 vectors).
        hidden_size: LSTM state width per direction.
        num_layers: stacked LSTM layers.
        bidirectional: read each text both ways.
        dropout: between LSTM layers and before the output layer.
        pretrained_embeddings: a ``(vocab_size, embedding_dim)`` tensor file (the DataModule
            writes it from its ``vectors``); loaded when a run starts without a checkpoint.
        freeze_embeddings: keep the embedding fixed.
        packed: pack sequences by length (``False`` reads pad tokens too).
        **kwargs: the task, optimiser, scheduler and L1 settings of :class:`TaskModule`.
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int = 2,
        pad_index: int = 1,
        embedding_dim: int = 300,
        hidden_size: int = 256,
        num_layers: int = 2,
        bidirectional: bool = True,
        dropout: float = 0.5,
        pretrained_embeddings: str | None = None,
        freeze_embeddings: bool = False,
        packed: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(network=None, num_classes=num_classes, **kwargs)
        self.network = ImprovedRNNNetwork(
            vocab_size, self.num_outputs, pad_index, embedding_dim, hidden_size, num_layers,
            bidirectional, dropout, freeze_embeddings, packed,
        )  # fmt: skip

    def load_pretrained(self) -> ImprovedRNN:
        return load_embedding_vectors(self)

    def exportable_network(self) -> nn.Module:
        return self.network.exportable()  # no PackedSequence in an exported graph


__all__ = [
    "ImprovedRNN",
    "PaddedLSTM",
    "RNNClassifier",
    "load_embedding_vectors",
    "run_recurrent",
    "token_lengths",
]
