"""Small building blocks the networks share (plain torch, no Lightning)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

Activation = Literal["relu", "gelu", "silu", "tanh", "leaky_relu", "elu"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
}


def make_activation(name: str) -> nn.Module:
    """An activation layer by name; an unknown name is an error, never a silent default."""
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]()


def check_num_features(num_features: Any) -> None:
    """A network of table rows needs their width; a clear error where the CLI's link is missing."""
    if not isinstance(num_features, int) or num_features < 1:
        raise ValueError(
            f"num_features must be a positive int, got {num_features!r}: the dlzoo CLI links it "
            "from the DataModule's num_features; from Python pass dm.num_features"
        )


@dataclass
class BackboneFeatures:
    """A batch of a frozen backbone's features computed once, before training
    (``cache_features``): :class:`BackboneWithHead` runs only its head on them. The DataModule
    that computed them hands them in this type, so no network tells features from images by a
    tensor's shape. A (mutable) dataclass, so Lightning moves it to the device as it is."""

    values: torch.Tensor


class BackboneWithHead(nn.Module):
    """What a network of a pretrained ``backbone`` and a new ``head`` on its features shares
    (the image fine-tuner's and the text encoder's): a subclass builds both and defines
    ``extract_features``; ``forward`` is the head on those features, or on
    :class:`BackboneFeatures` computed before.

    A frozen backbone stays in eval mode, also under ``train()``: its dropout and batch-norm
    statistics do not change, which is what makes cached features exact.
    """

    backbone: nn.Module
    head: nn.Module
    #: the backbone's features ``(N, feature_dim)`` of a batch (the subclass's method)
    extract_features: Callable[..., torch.Tensor]

    def classify_features(self, features: torch.Tensor) -> torch.Tensor:
        """The head on features :meth:`extract_features` gave (cached ones, too)."""
        return self.head(features)

    def forward(self, *inputs: Any) -> torch.Tensor:
        if isinstance(inputs[0], BackboneFeatures):
            return self.classify_features(inputs[0].values)
        return self.classify_features(self.extract_features(*inputs))

    @property
    def backbone_frozen(self) -> bool:
        return not any(p.requires_grad for p in self.backbone.parameters())

    def freeze_backbone(self) -> None:
        """No gradients for the backbone, and eval mode (see the class)."""
        self.backbone.requires_grad_(False)
        self.backbone.eval()

    def train(self, mode: bool = True) -> BackboneWithHead:
        super().train(mode)
        if mode and self.backbone_frozen:
            self.backbone.eval()
        return self

    def load_backbone_state(self, state: dict[str, torch.Tensor], what: str) -> None:
        """Load pretrained ``state`` into the backbone; weights that do not fit it (``what``
        says what they were: "<file> does not fit <backbone>") are an error naming the keys."""
        own = self.backbone.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        wrong = [k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
        if missing or unexpected or wrong:
            raise ValueError(
                f"{what}: {len(missing)} missing key(s) {missing[:5]}, {len(unexpected)} "
                f"unexpected {unexpected[:5]}, {len(wrong)} of another shape {wrong[:5]}"
            )
        self.backbone.load_state_dict(state)


def make_head(
    width: int,
    num_outputs: int,
    sizes: Sequence[int] = (),
    dropout: float = 0.0,
    activation: str = "relu",
) -> nn.Sequential:
    """A new head on pretrained features: ``Linear -> activation -> [Dropout]`` per hidden
    width, then ``Linear`` to the outputs."""
    layers: list[nn.Module] = []
    for hidden in sizes:
        layers += [nn.Linear(width, hidden), make_activation(activation)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = hidden
    layers.append(nn.Linear(width, num_outputs))
    return nn.Sequential(*layers)


def token_lengths(tokens: torch.Tensor, pad_index: int) -> torch.Tensor:
    """Real tokens per row of a padded batch (at least 1)."""
    return (tokens != pad_index).sum(dim=1).clamp(min=1)


def run_recurrent(layer: nn.RNNBase, inputs: torch.Tensor | PackedSequence) -> Any:
    """``layer(inputs)``, in float32 when CPU autocast (``bf16-mixed``, ``16-mixed``) is on.

    oneDNN, which runs recurrent layers on CPUs, has no reduced-precision training kernels for
    them ("could not create a primitive descriptor for the LSTM forward propagation primitive");
    on GPUs cuDNN has, so autocast keeps its speed there.
    """
    device = (inputs.data if isinstance(inputs, PackedSequence) else inputs).device
    if device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            return layer(inputs.float())
    return layer(inputs)


__all__ = [
    "Activation",
    "BackboneFeatures",
    "BackboneWithHead",
    "check_num_features",
    "make_activation",
    "make_head",
    "run_recurrent",
    "token_lengths",
]
