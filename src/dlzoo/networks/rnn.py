"""Recurrent text networks (book chapter 7): the vanilla RNN and the ImprovedRNN (BiLSTM).

Both take ``(tokens, lengths)``: ``tokens`` ``(N, T)`` padded with ``pad_index``, ``lengths``
``(N,)`` (computed from the padding when omitted).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from dlzoo.networks.layers import run_recurrent, token_lengths

log = logging.getLogger(__name__)


def load_vectors(embedding: nn.Embedding, path: str | Path, pad_index: int) -> None:
    """Copy a ``(vocab_size, dim)`` tensor file (written by a text DataModule from its
    ``vectors``) into ``embedding``, the pad row zeroed."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(
            f"pretrained embeddings not found: {file} (written by the DataModule from its "
            "`vectors` file; re-run with the vectors available, or set pretrained_embeddings: null)"
        )
    vectors = torch.load(file, map_location="cpu", weights_only=True)
    if tuple(vectors.shape) != tuple(embedding.weight.shape):
        raise ValueError(
            f"{file} holds vectors of shape {tuple(vectors.shape)}, the embedding is "
            f"{tuple(embedding.weight.shape)} (vocab_size, embedding_dim): set embedding_dim to "
            f"{vectors.shape[1]}"
        )
    with torch.no_grad():
        embedding.weight.copy_(vectors)
        embedding.weight[pad_index].zero_()
    log.info("embedding initialised from %s", file)


class PaddedLSTM(nn.Module):
    """What an ``nn.LSTM`` computes over packed sequences, from padded input and lengths.

    Exporters (ONNX, TorchScript tracing) cannot carry a ``PackedSequence``. This module shares
    the LSTM's parameters and runs each layer and direction as a one-layer LSTM over the padded
    batch: forward directions read steps ``0 .. length-1`` (the pad steps after them cannot
    change those outputs), backward directions read each text reversed within its own length
    (pad steps stay at the end), and the final state is taken at step ``length - 1``. Its
    ``forward`` returns ``h_n`` as the packed LSTM does (eval mode: no dropout between layers).
    """

    def __init__(self, lstm: nn.LSTM) -> None:
        super().__init__()
        if not lstm.batch_first or lstm.proj_size:
            raise ValueError("PaddedLSTM needs a batch_first LSTM without projections")
        directions = 2 if lstm.bidirectional else 1
        self.directions = directions
        self.cells = nn.ModuleList()
        for layer in range(lstm.num_layers):
            size = lstm.input_size if layer == 0 else lstm.hidden_size * directions
            for direction in range(directions):
                cell = nn.LSTM(size, lstm.hidden_size, bias=lstm.bias, batch_first=True)
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")[
                    : 4 if lstm.bias else 2
                ]:
                    setattr(cell, f"{name}_l0", getattr(lstm, f"{name}{suffix}"))
                self.cells.append(cell)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        steps = torch.arange(x.shape[1], device=x.device)[None, :]
        lengths = lengths.to(x.device)[:, None]
        # reverses the first `length` steps of each row and keeps its pad steps where they are
        reverse = torch.where(steps < lengths, lengths - 1 - steps, steps)
        last = (lengths[:, 0] - 1).clamp(min=0)
        rows = torch.arange(x.shape[0], device=x.device)
        finals = []
        for layer in range(len(self.cells) // self.directions):
            outputs = []
            for direction in range(self.directions):
                cell = self.cells[layer * self.directions + direction]
                source = x if direction == 0 else _gather_steps(x, reverse)
                out, _ = cell(source)
                finals.append(out[rows, last])
                outputs.append(out if direction == 0 else _gather_steps(out, reverse))
            x = torch.cat(outputs, dim=2)
        return torch.stack(finals)


def _gather_steps(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[n, index[n, t]]`` for every row ``n`` and step ``t``."""
    return x.gather(1, index[:, :, None].expand(-1, -1, x.shape[2]))


class RNNNetwork(nn.Module):
    """The book's vanilla RNN (Listing 7-4): embedding -> ``nn.RNN`` -> last hidden state -> linear.

    It reads padded batches as they are, pad tokens included, as the book did.

    Args:
        vocab_size: vocabulary size.
        num_outputs: width of the output (1 for a binary task, the classes, the targets).
        embedding_dim: width of the word embedding.
        hidden_size: RNN state width.
    """

    def __init__(
        self, vocab_size: int, num_outputs: int, embedding_dim: int = 100, hidden_size: int = 256
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.rnn = nn.RNN(embedding_dim, hidden_size, batch_first=True)
        self.fc = nn.Linear(hidden_size, num_outputs)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        _, hidden = run_recurrent(self.rnn, self.embedding(tokens))
        return self.fc(hidden[-1])


class ImprovedRNNNetwork(nn.Module):
    """The book's ImprovedRNN (Listing 7-9): a stacked bidirectional LSTM over packed sequences.

    Embedding (padding index, optionally frozen) -> LSTM (packed, so pad tokens are never read)
    -> final forward and backward states of the last layer, concatenated -> dropout -> linear.

    Args:
        vocab_size: vocabulary size.
        num_outputs: width of the output (1 for a binary task, the classes, the targets).
        pad_index: index of ``<pad>``.
        embedding_dim: width of the word embedding (300 for fastText/GloVe-300 vectors).
        hidden_size: LSTM state width per direction.
        num_layers: stacked LSTM layers.
        bidirectional: read each text both ways.
        dropout: between LSTM layers and before the output layer.
        freeze_embeddings: keep the embedding fixed.
        packed: pack sequences by length (``False`` reads pad tokens too).
    """

    def __init__(
        self,
        vocab_size: int,
        num_outputs: int,
        pad_index: int = 1,
        embedding_dim: int = 300,
        hidden_size: int = 256,
        num_layers: int = 2,
        bidirectional: bool = True,
        dropout: float = 0.5,
        freeze_embeddings: bool = False,
        packed: bool = True,
    ) -> None:
        super().__init__()
        self.pad_index, self.bidirectional, self.packed = pad_index, bidirectional, packed
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_index)
        self.embedding.weight.requires_grad_(not freeze_embeddings)
        self.lstm: nn.Module = nn.LSTM(
            embedding_dim,
            hidden_size,
            num_layers=num_layers,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden_size * (2 if bidirectional else 1), num_outputs)

    def exportable(self) -> ImprovedRNNNetwork:
        """A copy that ONNX and TorchScript can trace (no ``PackedSequence``): the packed LSTM
        becomes a :class:`PaddedLSTM` computing the same on padding, sharing copied weights."""
        network = copy.deepcopy(self)
        if network.packed and isinstance(network.lstm, nn.LSTM):
            network.lstm = PaddedLSTM(network.lstm)
        return network

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if lengths is None:
            lengths = token_lengths(tokens, self.pad_index)
        embedded = self.dropout(self.embedding(tokens))
        if isinstance(self.lstm, PaddedLSTM):  # an exportable copy
            hidden = self.lstm(embedded, lengths)
        else:
            if self.packed:
                # pack so the LSTM skips pad tokens (book Listing 7-9); lengths on the CPU
                embedded = pack_padded_sequence(
                    embedded, lengths.cpu(), batch_first=True, enforce_sorted=False
                )
            _, (hidden, _) = run_recurrent(self.lstm, embedded)
        # the last layer's final states: forward and backward ones side by side
        state = torch.cat([hidden[-2], hidden[-1]], dim=1) if self.bidirectional else hidden[-1]
        return self.fc(self.dropout(state))
