"""Fine-tuning a pretrained classifier (book chapter 6: VGG16 on Cats vs Dogs).

A torchvision network's last ``Linear`` layer (VGG16's ``classifier[6]``, ResNet's ``fc``) is
replaced by ``Identity``, and a timm network is built without its classifier (``num_classes=0``):
the rest is the ``backbone``; a new ``head`` maps its features to the classes. Pretrained weights
load when a run starts and no checkpoint is being restored, so a fine-tuned checkpoint reloads
without the pretrained file or a network connection.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch
import torchvision
from lightning.pytorch.callbacks import BackboneFinetuning
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.warnings import PossibleUserWarning
from torch import nn

from dlzoo.models.backbones import (
    TIMM_PREFIX,
    read_state_dict,
    split_last_linear,
    timm_backbone,
    timm_hub_state,
    timm_name,
)
from dlzoo.models.base import TaskModule, make_activation
from dlzoo.registry import register_model

log = logging.getLogger(__name__)


class UnfreezeBackbone(BackboneFinetuning):
    """Lightning's ``BackboneFinetuning``, fixed for runs resumed after the unfreeze epoch.

    Lightning 2.6 re-freezes the backbone in ``setup()`` of a resumed run and unfreezes only at
    the exact unfreeze epoch, so a run resumed later never trains its backbone again
    (Lightning-AI/pytorch-lightning#21901): its parameters sit in the optimiser with
    ``requires_grad=False``. Here the backbone is made trainable again on every later epoch.
    """

    def freeze_before_training(self, pl_module: pl.LightningModule) -> None:
        # the whole backbone, batch norms included (Lightning's default keeps them trainable):
        # frozen means fixed statistics and no optimiser entry, as with freeze_backbone alone;
        # else the unfreeze epoch finds them in the optimiser already and warns
        self.freeze(pl_module.backbone, train_bn=False)

    def finetune_function(
        self, pl_module: pl.LightningModule, epoch: int, optimizer: torch.optim.Optimizer
    ) -> None:
        super().finetune_function(pl_module, epoch, optimizer)
        if epoch > self.unfreeze_backbone_at_epoch:
            self.make_trainable(pl_module.backbone)
        if epoch >= self.unfreeze_backbone_at_epoch:
            # Lightning keeps each module's mode as it was: the frozen backbone was in eval mode
            pl_module.backbone.train()


@register_model("finetune")  # also "vgg16_finetune", the book's name (registry.ALIASES)
class FineTuneClassifier(TaskModule):
    """A torchvision ImageNet classifier with a new head, backbone frozen (or unfrozen later).

    The book's setting: VGG16, frozen, head ``4096 -> 256 -> ReLU -> Dropout(0.4) -> 1``
    (135,309,633 parameters, 1,049,089 trainable). A frozen backbone stays in eval mode (its
    dropout and batch-norm statistics do not change), which is what makes ``cache_features``
    exact.

    Args:
        num_classes: 2 for binary (one logit), more for multiclass; labels of a multi-label task.
        backbone: a torchvision classification model name (``vgg16``, ``resnet18``,
            ``mobilenet_v2`` ...), or a timm model as ``timm/<name>`` (``timm/tf_efficientnet_lite0``;
            see ``timm.list_models()``).
        weights: the pretrained weights: ``DEFAULT`` (the best each library offers), a
            torchvision weights name (``IMAGENET1K_V1``) or a timm pretrained tag (``in1k``,
            from timm's Hugging Face hub cache). ``None`` for random initialisation. An image
            DataModule prepares images as these weights were trained (``preprocessing_spec``).
        weights_file: a local state dict of the backbone (for offline machines): ``.pth``,
            ``.pt``, ``.bin`` (loaded with ``weights_only=True``) or ``.safetensors``; wins over
            ``weights``. Keys that do not fit are named.
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
        feature_runtime: what computes cached features on CPU: ``onnxruntime`` (checked against
            torch on the first batch; torch where they differ), ``torch``, or ``auto``
            (ONNX Runtime on CPU, torch on a GPU).
        **kwargs: the task, optimiser, scheduler and L1 settings of :class:`TaskModule`.
    """

    def __init__(
        self,
        num_classes: int = 2,
        backbone: str = "vgg16",
        weights: str | None = "DEFAULT",
        weights_file: str | None = None,
        head_sizes: Sequence[int] = (256,),
        head_dropout: float = 0.4,
        activation: Literal["relu", "gelu", "silu", "tanh", "leaky_relu", "elu"] = "relu",
        freeze_backbone: bool = True,
        unfreeze_at_epoch: int | None = None,
        unfreeze_lr_ratio: float = 0.1,
        cache_features: bool = False,
        channels_last: bool = False,
        feature_runtime: Literal["auto", "onnxruntime", "torch"] = "auto",
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes=num_classes, **kwargs)
        if unfreeze_at_epoch is not None and not freeze_backbone:
            raise ValueError("unfreeze_at_epoch needs freeze_backbone=True")
        if cache_features and (not freeze_backbone or unfreeze_at_epoch is not None):
            raise ValueError("cache_features needs a backbone that stays frozen")
        if backbone.startswith(TIMM_PREFIX):
            network, self._replaced, feature_dim = timm_backbone(backbone, weights)
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
            self._replaced, last = split_last_linear(network)
            network.set_submodule(self._replaced, nn.Identity())
            feature_dim = last.in_features
        self.backbone = network
        layers: list[nn.Module] = []
        width = feature_dim
        for hidden in head_sizes:
            layers += [nn.Linear(width, hidden), make_activation(activation)]
            if head_dropout > 0:
                layers.append(nn.Dropout(head_dropout))
            width = hidden
        layers.append(nn.Linear(width, self.num_outputs))
        self.head = nn.Sequential(*layers)
        self.feature_dim = feature_dim
        if freeze_backbone:
            self.backbone.requires_grad_(False)
            self.backbone.eval()  # Lightning keeps each module's mode as it finds it at fit start
        if channels_last:
            self.to(memory_format=torch.channels_last)

    # --------------------------------------------------------------------------------- weights
    @property
    def is_timm(self) -> bool:
        return self.hparams.backbone.startswith(TIMM_PREFIX)

    def _weights_entry(self, name: str | None = None) -> Any:
        hp = self.hparams
        name = name or hp.weights
        try:
            return torchvision.models.get_model_weights(hp.backbone)[name]
        except KeyError:
            names = [w.name for w in torchvision.models.get_model_weights(hp.backbone)]
            raise ValueError(
                f"{hp.backbone} has no weights {name!r}; choose from {names}, DEFAULT or null"
            ) from None

    @property
    def preprocessing_spec(self) -> str | None:
        """The pretrained weights whose image transforms the data should use (an image
        DataModule adopts them): a torchvision weights entry or ``timm/<model>.<tag>``; ``None``
        for a randomly initialised backbone."""
        hp = self.hparams
        if hp.weights is None and not hp.weights_file:
            return None
        if self.is_timm:
            return TIMM_PREFIX + timm_name(hp.backbone, hp.weights)
        # a weights_file alone: assume the torchvision weights it was saved from are DEFAULT's
        entry = self._weights_entry(hp.weights or "DEFAULT")
        return f"{type(entry).__name__}.{entry.name}"

    def weights_path(self) -> Path | None:
        """The pretrained file: ``weights_file``, or where torch hub keeps torchvision's
        (``$TORCH_HOME/hub/checkpoints/...``); ``None`` for timm's hub weights."""
        if self.hparams.weights_file:
            return Path(self.hparams.weights_file)
        if self.hparams.weights is None or self.is_timm:
            return None
        url = self._weights_entry().url
        return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]

    def load_pretrained(self) -> FineTuneClassifier:
        """Load the backbone's pretrained weights (file, hub cache, or download); returns ``self``."""
        hp = self.hparams
        path = self.weights_path()
        if path is None and hp.weights is None:
            rank_zero_warn(
                f"FineTuneClassifier: {hp.backbone} has random weights (weights=None)"
                + (", and it is frozen: only the head learns" if hp.freeze_backbone else "")
            )
            self._pretrained_done = True
            return self
        if hp.weights_file and not path.is_file():
            raise FileNotFoundError(f"weights_file not found: {path}")
        if path is None:  # timm's own weights, from the Hugging Face hub cache
            state, path = timm_hub_state(hp.backbone, hp.weights), "the Hugging Face hub cache"
        else:
            if not path.is_file():
                self._download_torchvision(path)
            state = read_state_dict(path)
        self._load_backbone_state(state, str(path))
        log.info("loaded %s weights from %s", hp.backbone, path)
        self._pretrained_done = True
        return self

    def _download_torchvision(self, path: Path) -> None:
        hp = self.hparams
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

    def _load_backbone_state(self, state: dict[str, torch.Tensor], source: str) -> None:
        """Load ``state`` into the backbone, leaving out the replaced ImageNet classifier; a file
        that does not fit is an error naming the keys."""
        hp = self.hparams
        prefix = self._replaced + "."
        state = {k: v for k, v in state.items() if not k.startswith(prefix)}
        own = self.backbone.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        wrong = [k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
        if missing or unexpected or wrong:
            kind = "timm's" if self.is_timm else "torchvision's"
            raise ValueError(
                f"{source} does not fit {kind} {hp.backbone.removeprefix(TIMM_PREFIX)}: "
                f"{len(missing)} missing key(s) {missing[:5]}, {len(unexpected)} unexpected "
                f"{unexpected[:5]}, {len(wrong)} of another shape {wrong[:5]}"
            )
        self.backbone.load_state_dict(state)

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
        # the data side is handed what it needs by callbacks: neither side reads the other
        from dlzoo.callbacks import AdoptPreprocessing, CacheFeatures

        hp = self.hparams
        callbacks: list[pl.Callback] = [AdoptPreprocessing()]
        if hp.cache_features:
            callbacks.append(CacheFeatures())
        if hp.unfreeze_at_epoch is not None:
            callbacks.append(
                UnfreezeBackbone(
                    unfreeze_backbone_at_epoch=hp.unfreeze_at_epoch,
                    backbone_initial_ratio_lr=hp.unfreeze_lr_ratio,
                    should_align=True,
                )
            )
        return callbacks

    def on_fit_start(self) -> None:
        super().on_fit_start()  # logs the parameter counts
        if self.backbone_frozen:
            # Lightning warns about modules in eval mode at the start of training; a frozen
            # backbone is kept in eval mode on purpose (fixed batch-norm statistics, no dropout).
            # Silenced only when those modules are exactly the backbone's.
            in_eval = [m for m in self.modules() if not m.training]
            if len(in_eval) == len(list(self.backbone.modules())):
                warnings.filterwarnings(
                    "ignore",
                    message=rf"Found {len(in_eval)} module\(s\) in eval mode at the start",
                    category=PossibleUserWarning,
                )

    def extract_features(self, images: torch.Tensor) -> torch.Tensor:
        """Backbone features ``(N, feature_dim)`` of a batch of images."""
        if self.hparams.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.backbone(images)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of images ``(N, 3, H, W)``, or of cached backbone features ``(N, feature_dim)``."""
        features = x if x.ndim == 2 else self.extract_features(x)
        return self.head(features)
