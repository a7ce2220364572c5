"""A pretrained classifier's backbone with a new head (book chapter 6: VGG16 on Cats vs Dogs).

A torchvision network's last ``Linear`` layer (VGG16's ``classifier[6]``, ResNet's ``fc``) is
replaced by ``Identity``, and a timm network is built without its classifier (``num_classes=0``):
the rest is the ``backbone``; a new ``head`` maps its features to the outputs. Nothing is read
or downloaded when the network is built: :meth:`FineTuneNetwork.load_pretrained` loads the
weights (the dlzoo model calls it when a run starts without a checkpoint).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from dlzoo.networks.backbones import (
    TIMM_PREFIX,
    read_state_dict,
    split_last_linear,
    timm_backbone,
    timm_hub_state,
    timm_name,
)
from dlzoo.networks.layers import Activation, BackboneWithHead, make_head

log = logging.getLogger(__name__)


def weights_entry(backbone: str, name: str) -> Any:
    """torchvision's weights entry ``name`` of ``backbone``; an unknown name is an error listing
    the known ones."""
    try:
        return torchvision.models.get_model_weights(backbone)[name]
    except KeyError:
        names = [w.name for w in torchvision.models.get_model_weights(backbone)]
        raise ValueError(
            f"{backbone} has no weights {name!r}; choose from {names}, DEFAULT or null"
        ) from None


def preprocessing_spec(
    backbone: str, weights: str | None, weights_file: str | None = None
) -> str | None:
    """The pretrained weights whose image transforms the data should use, from a
    :class:`FineTuneNetwork`'s arguments alone (nothing is built or read): a torchvision
    weights entry or ``timm/<model>.<tag>``; ``None`` for a randomly initialised backbone."""
    if weights is None and not weights_file:
        return None
    if backbone.startswith(TIMM_PREFIX):
        return TIMM_PREFIX + timm_name(backbone, weights)
    # a weights_file alone: assume the torchvision weights it was saved from are DEFAULT's
    entry = weights_entry(backbone, weights or "DEFAULT")
    return f"{type(entry).__name__}.{entry.name}"


class FineTuneNetwork(BackboneWithHead):
    """``backbone`` (a pretrained torchvision or timm classifier without its last layer) ->
    ``head`` (``Linear -> activation -> [Dropout]`` per hidden width, then ``Linear``).

    A frozen backbone stays in eval mode, also under ``train()`` (:class:`BackboneWithHead`).

    Args:
        num_outputs: width of the output (1 for a binary task, the classes, the targets).
        backbone: a torchvision classification model name (``vgg16``, ``resnet18``,
            ``mobilenet_v2`` ...), or a timm model as ``timm/<name>``.
        weights: ``DEFAULT``, a torchvision weights name (``IMAGENET1K_V1``) or a timm
            pretrained tag (``in1k``); ``None`` for random initialisation.
        weights_file: a local state dict of the backbone (``.pth``, ``.pt``, ``.bin``,
            ``.safetensors``); wins over ``weights``.
        head_sizes: hidden widths of the new head.
        head_dropout: dropout after each hidden layer of the head.
        activation: head non-linearity.
        freeze_backbone: no gradients for the backbone (train the head only).
        channels_last: run convolutions in NHWC layout.
    """

    def __init__(
        self,
        num_outputs: int,
        backbone: str = "vgg16",
        weights: str | None = "DEFAULT",
        weights_file: str | None = None,
        head_sizes: Sequence[int] = (256,),
        head_dropout: float = 0.4,
        activation: Activation = "relu",
        freeze_backbone: bool = True,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.backbone_name, self.weights, self.weights_file = backbone, weights, weights_file
        self.channels_last = channels_last
        if backbone.startswith(TIMM_PREFIX):
            network, self.replaced, feature_dim = timm_backbone(backbone, weights)
        else:
            if backbone not in torchvision.models.list_models(torchvision.models):
                raise ValueError(
                    f"unknown torchvision classifier {backbone!r}; e.g. vgg16, resnet18, "
                    "mobilenet_v2 (torchvision.models.list_models()), or a timm model as "
                    "timm/<name>, e.g. timm/tf_efficientnet_lite0 (timm.list_models())"
                )
            if weights is not None:
                self._weights_entry()  # a bad weights name fails now, before any data is read
            network = torchvision.models.get_model(backbone, weights=None)  # no I/O here
            self.replaced, last = split_last_linear(network)
            network.set_submodule(self.replaced, nn.Identity())
            feature_dim = last.in_features
        self.backbone = network
        self.head = make_head(feature_dim, num_outputs, head_sizes, head_dropout, activation)
        self.feature_dim = feature_dim
        if freeze_backbone:
            self.freeze_backbone()
        if channels_last:
            self.to(memory_format=torch.channels_last)

    # --------------------------------------------------------------------------------- weights
    @property
    def is_timm(self) -> bool:
        return self.backbone_name.startswith(TIMM_PREFIX)

    def _weights_entry(self, name: str | None = None) -> Any:
        return weights_entry(self.backbone_name, name or self.weights)

    @property
    def preprocessing_spec(self) -> str | None:
        """See :func:`preprocessing_spec`."""
        return preprocessing_spec(self.backbone_name, self.weights, self.weights_file)

    def weights_path(self) -> Path | None:
        """The pretrained file: ``weights_file``, or where torch hub keeps torchvision's
        (``$TORCH_HOME/hub/checkpoints/...``); ``None`` for timm's hub weights."""
        if self.weights_file:
            return Path(self.weights_file)
        if self.weights is None or self.is_timm:
            return None
        url = self._weights_entry().url
        return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]

    def load_pretrained(self) -> bool:
        """Load the backbone's pretrained weights (file, hub cache, or download); ``False`` when
        the network has none (``weights=None``)."""
        path = self.weights_path()
        if path is None and self.weights is None:
            return False
        if self.weights_file and not path.is_file():
            raise FileNotFoundError(f"weights_file not found: {path}")
        if path is None:  # timm's own weights, from the Hugging Face hub cache
            state = timm_hub_state(self.backbone_name, self.weights)
            path = "the Hugging Face hub cache"
        else:
            if not path.is_file():
                self._download_torchvision(path)
            state = read_state_dict(path)
        self._load_imagenet_state(state, str(path))
        log.info("loaded %s weights from %s", self.backbone_name, path)
        return True

    def _download_torchvision(self, path: Path) -> None:
        url = self._weights_entry().url
        try:
            torch.hub.load_state_dict_from_url(url, progress=True, check_hash=True)
        except Exception as err:  # URLError, HTTPError, hash mismatch, timeouts
            raise FileNotFoundError(
                f"pretrained {self.backbone_name} weights {self.weights} are not at {path} and "
                f"could not be downloaded ({type(err).__name__}: {err}). On an offline machine, "
                f"download {url} elsewhere and copy it to {path} (the torch hub cache; "
                "$TORCH_HOME moves it), or pass --model.init_args.weights_file "
                f"/path/to/{path.name}, or weights: null to start from random weights."
            ) from err

    def _load_imagenet_state(self, state: dict[str, torch.Tensor], source: str) -> None:
        """Load ``state`` into the backbone, leaving out the replaced ImageNet classifier; a file
        that does not fit is an error naming the keys."""
        prefix = self.replaced + "."
        state = {k: v for k, v in state.items() if not k.startswith(prefix)}
        kind = "timm's" if self.is_timm else "torchvision's"
        name = self.backbone_name.removeprefix(TIMM_PREFIX)
        self.load_backbone_state(state, f"{source} does not fit {kind} {name}")

    # ---------------------------------------------------------------------------- computing
    def extract_features(self, images: torch.Tensor) -> torch.Tensor:
        """Backbone features ``(N, feature_dim)`` of a batch of images."""
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.backbone(images)
