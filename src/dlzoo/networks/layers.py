"""Small building blocks the networks share (plain torch, no Lightning)."""

from __future__ import annotations

from collections.abc import Sequence
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


__all__ = ["Activation", "make_activation", "make_head", "run_recurrent", "token_lengths"]
