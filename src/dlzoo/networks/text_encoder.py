"""A pretrained transformer encoder (BERT family, Hugging Face ``transformers``) with a new head
(book chapter 8: a pretrained encoder fine-tuned for chapter 7's sentiment task).

The network is built from the encoder's configuration alone (``AutoConfig`` /
``AutoModel.from_config``: no file is read), so a checkpoint that carries the configuration
rebuilds it after the encoder's folder is gone; :meth:`TextEncoderNetwork.load_pretrained`
loads the pretrained weights (the dlzoo model calls it when a run starts without a checkpoint).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import nn

from dlzoo.hub import CONFIG_FILE, pretrained_folder
from dlzoo.networks.layers import Activation, BackboneWithHead, make_head

log = logging.getLogger(__name__)

Pooling = Literal["mean", "cls"]


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise ImportError(
            "pretrained text encoders need Hugging Face transformers: pip install transformers"
        ) from None
    transformers.logging.set_verbosity_error()  # its load reports are said by dlzoo, once
    transformers.logging.disable_progress_bar()
    return transformers


def encoder_config(source: str) -> dict[str, Any]:
    """The configuration of pretrained encoder ``source`` (a folder or hub id) as plain data:
    what :class:`TextEncoderNetwork` is built from and a checkpoint carries."""
    transformers = _transformers()
    folder = pretrained_folder(source, CONFIG_FILE)
    config = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True)
    return json.loads(config.to_json_string(use_diff=False))


class TextEncoderNetwork(BackboneWithHead):
    """``backbone`` (a pretrained transformer encoder) -> pooling over the real tokens (the
    attention mask comes from ``lengths``) -> dropout -> ``head`` (``Linear -> activation ->
    [Dropout]`` per hidden width, then ``Linear``).

    A frozen backbone stays in eval mode, also under ``train()`` (:class:`BackboneWithHead`).

    Args:
        config: the encoder's configuration (:func:`encoder_config`).
        num_outputs: width of the output (1 for a binary task, the classes, the targets).
        pooling: ``mean`` over the real tokens (how sentence-transformers encoders were
            trained) or ``cls`` (the first token's state, BERT's classifier input).
        head_sizes: hidden widths of the new head.
        head_dropout: dropout on the pooled features and after each hidden layer of the head.
        activation: head non-linearity.
        freeze_backbone: no gradients for the backbone (train the head only).
    """

    def __init__(
        self,
        config: dict[str, Any],
        num_outputs: int,
        pooling: Pooling = "mean",
        head_sizes: Sequence[int] = (),
        head_dropout: float = 0.1,
        activation: Activation = "gelu",
        freeze_backbone: bool = False,
    ) -> None:
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', got {pooling!r}")
        if not 0.0 <= head_dropout < 1.0:
            raise ValueError(f"head_dropout must be in [0, 1), got {head_dropout}")
        transformers = _transformers()
        settings = dict(config)
        model_type = settings.pop("model_type", None)
        if not model_type:
            raise ValueError("the encoder's configuration names no model_type")
        built = transformers.AutoConfig.for_model(model_type, **settings)
        try:  # BERT's pooler (a trained dense layer on [CLS]) is left out: the head replaces it
            self.backbone = transformers.AutoModel.from_config(built, add_pooling_layer=False)
        except TypeError:
            self.backbone = transformers.AutoModel.from_config(built)
        self.pooling = pooling
        self.feature_dim = int(built.hidden_size)
        #: the most tokens one text may have (positions the encoder was trained for)
        self.max_positions = int(getattr(built, "max_position_embeddings", 0) or 0) or None
        self.dropout = nn.Dropout(head_dropout)
        self.head = make_head(self.feature_dim, num_outputs, head_sizes, head_dropout, activation)
        if freeze_backbone:
            self.freeze_backbone()

    # --------------------------------------------------------------------------------- weights
    def load_pretrained(self, source: str) -> None:
        """Load the pretrained weights of ``source`` (the folder or hub id the configuration
        came from) into the backbone; weights that do not fit are named."""
        transformers = _transformers()
        folder = pretrained_folder(source, CONFIG_FILE)
        try:
            pretrained = transformers.AutoModel.from_pretrained(str(folder), local_files_only=True)
        except OSError as err:
            raise FileNotFoundError(
                f"text encoder {source!r}: {folder} holds no weights "
                f"(model.safetensors): {' '.join(str(err).split())[:200]}"
            ) from None
        state = {k: v for k, v in pretrained.state_dict().items() if not k.startswith("pooler.")}
        self.load_backbone_state(state, f"the weights of {source} do not fit its configuration")
        log.info("loaded the text encoder's weights from %s", folder)

    # ---------------------------------------------------------------------------- computing
    def extract_features(
        self, tokens: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Pooled features ``(N, feature_dim)`` of padded token ids ``(N, T)`` and their
        lengths (``None``: no padding)."""
        if self.max_positions and tokens.shape[1] > self.max_positions:
            tokens = tokens[:, : self.max_positions]
        steps = torch.arange(tokens.shape[1], device=tokens.device)
        if lengths is None:
            mask = torch.ones_like(tokens, dtype=torch.bool)
        else:
            mask = steps[None, :] < lengths.to(tokens.device)[:, None]
        states = self.backbone(input_ids=tokens, attention_mask=mask.long()).last_hidden_state
        if self.pooling == "cls":
            return states[:, 0]
        keep = mask.unsqueeze(-1).to(states.dtype)
        return (states * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1)

    def classify_features(self, features: torch.Tensor) -> torch.Tensor:
        """Dropout, then the head, on pooled features (cached ones, too)."""
        return self.head(self.dropout(features))

    def layer_of(self, name: str) -> int:
        """Depth of a backbone parameter for layer-wise learning rates: 0 for the embeddings,
        ``i + 1`` for encoder layer ``i``, the number of layers + 1 above them."""
        parts = name.split(".")
        if "embeddings" in parts:
            return 0
        for at, part in enumerate(parts[:-1]):
            if part in ("layer", "layers") and parts[at + 1].isdigit():
                return int(parts[at + 1]) + 1
        return self.num_layers + 1

    @property
    def num_layers(self) -> int:
        return int(getattr(self.backbone.config, "num_hidden_layers", 0) or 0)


class PooledFeatures(nn.Module):
    """A text encoder network's :meth:`~TextEncoderNetwork.extract_features` as a module of its
    own (what ONNX Runtime runs for cached features)."""

    def __init__(self, network: TextEncoderNetwork) -> None:
        super().__init__()
        self.network = network

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.network.extract_features(tokens, lengths)
