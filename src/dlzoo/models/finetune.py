"""Fine-tuning a pretrained torchvision classifier (book chapter 6: VGG16 on Cats vs Dogs).

The torchvision network's last ``Linear`` layer (VGG16's ``classifier[6]``, ResNet's ``fc``) is
replaced by ``Identity``, which makes the rest the ``backbone``; a new ``head`` maps its features
to the classes. Pretrained weights load when a run starts and no checkpoint is being restored, so
a fine-tuned checkpoint reloads without the pretrained file or a network connection.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch
import torchvision
from lightning.pytorch.callbacks import BackboneFinetuning
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from dlzoo.models.base import ClassificationModule, make_activation
from dlzoo.registry import register_model

log = logging.getLogger(__name__)


def _split_last_linear(network: nn.Module) -> tuple[str, nn.Linear]:
    name, last = None, None
    for module_name, module in network.named_modules():
        if isinstance(module, nn.Linear):
            name, last = module_name, module
    if last is None:
        raise ValueError(f"{type(network).__name__} has no Linear layer to replace with a head")
    return name, last


class UnfreezeBackbone(BackboneFinetuning):
    """Lightning's ``BackboneFinetuning``, fixed for runs resumed after the unfreeze epoch.

    Lightning 2.6 re-freezes the backbone in ``setup()`` of a resumed run and unfreezes only at
    the exact unfreeze epoch, so a run resumed later never trains its backbone again
    (Lightning-AI/pytorch-lightning#21901): its parameters sit in the optimiser with
    ``requires_grad=False``. Here the backbone is made trainable again on every later epoch.
    """

    def finetune_function(
        self, pl_module: pl.LightningModule, epoch: int, optimizer: torch.optim.Optimizer
    ) -> None:
        super().finetune_function(pl_module, epoch, optimizer)
        if epoch > self.unfreeze_backbone_at_epoch:
            self.make_trainable(pl_module.backbone)


@register_model("vgg16_finetune")
class FineTuneClassifier(ClassificationModule):
    """A torchvision ImageNet classifier with a new head, backbone frozen (or unfrozen later).

    The book's setting: VGG16, frozen, head ``4096 -> 256 -> ReLU -> Dropout(0.4) -> 1``
    (135,309,633 parameters, 1,049,089 trainable). A frozen backbone stays in eval mode (its
    dropout and batch-norm statistics do not change), which is what makes ``cache_features``
    exact.

    Args:
        num_classes: 2 for binary (one logit), more for multiclass.
        backbone: a torchvision classification model name (``vgg16``, ``resnet18``,
            ``efficientnet_b0`` ...).
        weights: torchvision weights name for the backbone (``IMAGENET1K_V1``, ``DEFAULT``), or
            ``None`` for random initialisation.
        weights_file: a local ``.pth`` state dict of the backbone (for offline machines); wins
            over ``weights``.
        head_sizes: hidden widths of the new head.
        head_dropout: dropout after each hidden layer of the head.
        activation: head non-linearity.
        freeze_backbone: train the head only.
        unfreeze_at_epoch: with a frozen backbone, unfreeze it at this epoch (gradual
            fine-tuning with Lightning's ``BackboneFinetuning``), its learning rate starting at
            ``unfreeze_lr_ratio`` times ``lr``.
        unfreeze_lr_ratio: see ``unfreeze_at_epoch``.
        cache_features: compute backbone features of the train/val images once and train the
            head on them (frozen backbone, no augmentation, an image DataModule).
        channels_last: run convolutions in NHWC layout (faster with mixed precision on GPUs).
        **kwargs: optimiser, scheduler and L1 settings of :class:`ClassificationModule`.
    """

    def __init__(
        self,
        num_classes: int = 2,
        backbone: str = "vgg16",
        weights: str | None = "IMAGENET1K_V1",
        weights_file: str | None = None,
        head_sizes: Sequence[int] = (256,),
        head_dropout: float = 0.4,
        activation: Literal["relu", "gelu", "silu", "tanh", "leaky_relu", "elu"] = "relu",
        freeze_backbone: bool = True,
        unfreeze_at_epoch: int | None = None,
        unfreeze_lr_ratio: float = 0.1,
        cache_features: bool = False,
        channels_last: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes=num_classes, **kwargs)
        if backbone not in torchvision.models.list_models(torchvision.models):
            raise ValueError(
                f"unknown torchvision classifier {backbone!r}; e.g. vgg16, resnet18, "
                "efficientnet_b0 (torchvision.models.list_models())"
            )
        if weights is not None:
            self._weights_entry()  # a bad weights name fails now, before any data is read
        if unfreeze_at_epoch is not None and not freeze_backbone:
            raise ValueError("unfreeze_at_epoch needs freeze_backbone=True")
        if cache_features and (not freeze_backbone or unfreeze_at_epoch is not None):
            raise ValueError("cache_features needs a backbone that stays frozen")
        network = torchvision.models.get_model(backbone, weights=None)  # no I/O here
        self._replaced, last = _split_last_linear(network)
        network.set_submodule(self._replaced, nn.Identity())
        self.backbone = network
        layers: list[nn.Module] = []
        width = last.in_features
        for hidden in head_sizes:
            layers += [nn.Linear(width, hidden), make_activation(activation)]
            if head_dropout > 0:
                layers.append(nn.Dropout(head_dropout))
            width = hidden
        layers.append(nn.Linear(width, self.num_outputs))
        self.head = nn.Sequential(*layers)
        self.feature_dim = last.in_features
        if freeze_backbone:
            self.backbone.requires_grad_(False)
            self.backbone.eval()  # Lightning keeps each module's mode as it finds it at fit start
        if channels_last:
            self.to(memory_format=torch.channels_last)

    # --------------------------------------------------------------------------------- weights
    def _weights_entry(self) -> Any:
        hp = self.hparams
        try:
            return torchvision.models.get_model_weights(hp.backbone)[hp.weights]
        except KeyError:
            names = [w.name for w in torchvision.models.get_model_weights(hp.backbone)]
            raise ValueError(
                f"{hp.backbone} has no weights {hp.weights!r}; choose from {names}, DEFAULT or null"
            ) from None

    def weights_path(self) -> Path | None:
        """Where torch hub keeps the pretrained file (``$TORCH_HOME/hub/checkpoints/...``)."""
        if self.hparams.weights_file:
            return Path(self.hparams.weights_file)
        if self.hparams.weights is None:
            return None
        url = self._weights_entry().url
        return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]

    def load_pretrained(self) -> FineTuneClassifier:
        """Load the backbone's pretrained weights (file, hub cache, or download); returns ``self``."""
        hp = self.hparams
        path = self.weights_path()
        if path is None:
            rank_zero_warn(
                f"FineTuneClassifier: {hp.backbone} has random weights (weights=None)"
                + (", and it is frozen: only the head learns" if hp.freeze_backbone else "")
            )
            self._pretrained_done = True
            return self
        if hp.weights_file and not path.is_file():
            raise FileNotFoundError(f"weights_file not found: {path}")
        if not path.is_file():
            url = self._weights_entry().url
            try:
                torch.hub.load_state_dict_from_url(url, progress=True, check_hash=True)
            except Exception as err:  # URLError, HTTPError, hash mismatch, timeouts
                raise FileNotFoundError(
                    f"pretrained {hp.backbone} weights {hp.weights} are not at {path} and could "
                    f"not be downloaded ({type(err).__name__}: {err}). On an offline machine, "
                    f"download {url} elsewhere and copy it to {path} (the torch hub cache; "
                    "$TORCH_HOME moves it), or pass --model.init_args.weights_file "
                    f"/path/to/{path.name}, or weights: null to start from random weights."
                ) from err
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        prefix = self._replaced + "."
        dropped = {k for k in state if k.startswith(prefix)}  # the replaced ImageNet classifier
        result = self.backbone.load_state_dict(
            {k: v for k, v in state.items() if k not in dropped}, strict=False
        )
        if result.missing_keys or result.unexpected_keys:
            raise ValueError(
                f"{path} does not fit torchvision's {hp.backbone}: missing "
                f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}"
            )
        log.info("loaded %s weights from %s", hp.backbone, path)
        self._pretrained_done = True
        return self

    # ----------------------------------------------------------------------------- training
    @property
    def backbone_frozen(self) -> bool:
        return not any(p.requires_grad for p in self.backbone.parameters())

    def train(self, mode: bool = True) -> FineTuneClassifier:
        super().train(mode)
        if mode and self.backbone_frozen:
            self.backbone.eval()  # a frozen feature extractor: no dropout, fixed BN statistics
        return self

    def configure_callbacks(self) -> list[pl.Callback]:
        hp = self.hparams
        if hp.unfreeze_at_epoch is None:
            return []
        return [
            UnfreezeBackbone(
                unfreeze_backbone_at_epoch=hp.unfreeze_at_epoch,
                backbone_initial_ratio_lr=hp.unfreeze_lr_ratio,
                should_align=True,
            )
        ]

    def on_fit_start(self) -> None:
        super().on_fit_start()  # logs the parameter counts
        if self.hparams.cache_features:
            datamodule = self.trainer.datamodule
            if not hasattr(datamodule, "cache_features"):
                raise ValueError(
                    "cache_features needs an image DataModule with cache_features() "
                    "(ImageFolderDataModule, CatsDogsDataModule)"
                )
            self.backbone.eval()
            datamodule.cache_features(self.extract_features, self.device)

    def extract_features(self, images: torch.Tensor) -> torch.Tensor:
        """Backbone features ``(N, feature_dim)`` of a batch of images."""
        if self.hparams.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.backbone(images)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of images ``(N, 3, H, W)``, or of cached backbone features ``(N, feature_dim)``."""
        features = x if x.ndim == 2 else self.extract_features(x)
        return self.head(features)
