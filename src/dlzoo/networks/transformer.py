"""Transformer encoder text network (the book's second seed)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from dlzoo.networks.layers import token_lengths

#: standard deviation of the initial token and position embeddings (BERT's initializer_range)
EMBEDDING_STD = 0.02


class TransformerNetwork(nn.Module):
    """Token + learned positional embeddings -> ``nn.TransformerEncoder`` -> pooling -> linear.

    Pad tokens are masked out of attention (``src_key_padding_mask``) and out of the mean
    pooling, so extra padding never changes the output. Texts longer than ``max_length`` tokens
    are cut.

    Args:
        vocab_size: vocabulary size.
        num_outputs: width of the output (1 for a binary task, the classes, the targets).
        pad_index: index of ``<pad>``.
        embedding_dim: model width ``d_model``.
        num_heads: attention heads (must divide ``embedding_dim``).
        num_layers: encoder layers.
        feedforward_dim: hidden width of each layer's MLP.
        dropout: dropout in the encoder and before the output layer.
        max_length: positions the positional embedding covers.
        pooling: ``mean`` over real tokens, or ``cls`` (a learned token in front).
        freeze_embeddings: keep the token embedding fixed.
    """

    def __init__(
        self,
        vocab_size: int,
        num_outputs: int,
        pad_index: int = 1,
        embedding_dim: int = 128,
        num_heads: int = 4,
        num_layers: int = 2,
        feedforward_dim: int = 256,
        dropout: float = 0.1,
        max_length: int = 2000,
        pooling: Literal["mean", "cls"] = "mean",
        freeze_embeddings: bool = False,
    ) -> None:
        super().__init__()
        if embedding_dim % num_heads:
            raise ValueError(f"num_heads ({num_heads}) must divide embedding_dim ({embedding_dim})")
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', got {pooling!r}")
        self.pad_index, self.max_length = pad_index, max_length
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_index)
        self.embedding.weight.requires_grad_(not freeze_embeddings)
        self.positions = nn.Embedding(max_length + 1, embedding_dim)  # +1: the CLS slot
        self.cls = nn.Parameter(torch.zeros(1, 1, embedding_dim)) if pooling == "cls" else None
        layer = nn.TransformerEncoderLayer(
            embedding_dim,
            num_heads,
            feedforward_dim,
            dropout,
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(
            layer, num_layers, norm=nn.LayerNorm(embedding_dim), enable_nested_tensor=False
        )
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(embedding_dim, num_outputs)
        # BERT's and GPT-2's initialisation: small embeddings. PyTorch's default N(0, 1) puts a
        # residual stream of norm ~sqrt(width) in front of the pre-norm layers, whose updates
        # then barely move it: a rare token's signal hardly trains (issue 27: multi-label texts
        # learnt only their frequent labels; micro-F1 0 after 30 epochs, 0.90 with this)
        nn.init.normal_(self.embedding.weight, std=EMBEDDING_STD)
        nn.init.normal_(self.positions.weight, std=EMBEDDING_STD)
        with torch.no_grad():
            self.embedding.weight[pad_index].zero_()

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        tokens = tokens[:, : self.max_length]
        if lengths is None:
            lengths = token_lengths(tokens, self.pad_index)
        lengths = lengths.to(tokens.device).clamp(max=tokens.shape[1])
        steps = torch.arange(tokens.shape[1], device=tokens.device)
        padding = steps[None, :] >= lengths[:, None]  # True where a token is padding
        x = self.embedding(tokens)
        if self.cls is not None:
            x = torch.cat([self.cls.expand(len(x), -1, -1), x], dim=1)
            padding = torch.cat([padding.new_zeros(len(x), 1), padding], dim=1)
        x = x + self.positions(torch.arange(x.shape[1], device=x.device))
        x = self.encoder(self.dropout(x), src_key_padding_mask=padding)
        if self.cls is not None:
            pooled = x[:, 0]
        else:
            keep = (~padding).unsqueeze(-1).to(x.dtype)
            pooled = (x * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1)
        return self.fc(self.dropout(pooled))
