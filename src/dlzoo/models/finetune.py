"""Fine-tuning a pretrained classifier (book chapter 6: VGG16 on Cats vs Dogs): a
:class:`~dlzoo.networks.finetune.FineTuneNetwork` (backbone + new head) trained by
:class:`~dlzoo.models.base.TaskModule`.

Pretrained weights load when a run starts and no checkpoint is being restored, so a fine-tuned
checkpoint reloads without the pretrained file or a network connection.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import BackboneFinetuning
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.warnings import PossibleUserWarning
from torch import nn

from dlzoo.data.base import DataModule
from dlzoo.models.base import TaskModule
from dlzoo.networks.backbones import CheckedExtractor
from dlzoo.networks.finetune import FineTuneNetwork, preprocessing_spec
from dlzoo.networks.layers import Activation
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


def cached_features_setting(init_args: Mapping[str, Any]) -> dict[str, Any]:
    """The fine-tuners' ``data_settings`` for ``cache_features``: a DataModule that can."""
    return {"cached_features": True} if init_args.get("cache_features") else {}


def check_backbone_options(
    freeze_backbone: bool, unfreeze_at_epoch: int | None, cache_features: bool
) -> None:
    """The fine-tuning options of a backbone and head (the image fine-tuner's and the text
    encoder's) that cannot go together."""
    if unfreeze_at_epoch is not None and not freeze_backbone:
        raise ValueError("unfreeze_at_epoch needs freeze_backbone=True")
    if cache_features and (not freeze_backbone or unfreeze_at_epoch is not None):
        raise ValueError("cache_features needs a backbone that stays frozen")


def backbone_callbacks(module: TaskModule) -> list[pl.Callback]:
    """A fine-tuner's callback for its ``unfreeze_at_epoch`` option (the image fine-tuner's
    and the text encoder's): Lightning's ``BackboneFinetuning``."""
    hp = module.hparams
    if hp.unfreeze_at_epoch is None:
        return []
    return [
        UnfreezeBackbone(
            unfreeze_backbone_at_epoch=hp.unfreeze_at_epoch,
            backbone_initial_ratio_lr=hp.unfreeze_lr_ratio,
            should_align=True,
        )
    ]


def start_backbone_fit(module: TaskModule, traced: nn.Module, input_names: Sequence[str]) -> None:
    """What a fine-tuner does when training starts, after its pretrained weights are loaded:
    keep Lightning quiet about the frozen backbone's eval mode, and with ``cache_features``
    hand the backbone to the Trainer's DataModule to compute the train/val features once.
    On CPU ONNX Runtime computes them from ``traced`` (a module of ``input_names``) unless
    ``feature_runtime='torch'``, checked against torch on the first batch."""
    if module.backbone_frozen:
        # Lightning warns about modules in eval mode at the start of training; a frozen
        # backbone is kept in eval mode on purpose (fixed batch-norm statistics, no dropout).
        # Silenced only when those modules are exactly the backbone's.
        in_eval = [m for m in module.modules() if not m.training]
        if len(in_eval) == len(list(module.backbone.modules())):
            warnings.filterwarnings(
                "ignore",
                message=rf"Found {len(in_eval)} module\(s\) in eval mode at the start",
                category=PossibleUserWarning,
            )
    if not module.hparams.cache_features:
        return
    datamodule = module.trainer.datamodule
    if not isinstance(datamodule, DataModule):
        raise ValueError(
            "cache_features needs a dlzoo image or text DataModule, not "
            f"{type(datamodule).__name__}"
        )
    module.backbone.eval()
    extractor = module.extract_features
    if module.device.type == "cpu" and module.hparams.feature_runtime != "torch":
        extractor = CheckedExtractor(traced, extractor, torch.get_num_threads(), input_names)
    datamodule.cache_features(extractor, module.device)


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
        activation: Activation = "relu",
        freeze_backbone: bool = True,
        unfreeze_at_epoch: int | None = None,
        unfreeze_lr_ratio: float = 0.1,
        cache_features: bool = False,
        channels_last: bool = False,
        feature_runtime: Literal["auto", "onnxruntime", "torch"] = "auto",
        **kwargs: Any,
    ) -> None:
        super().__init__(network=None, num_classes=num_classes, **kwargs)
        check_backbone_options(freeze_backbone, unfreeze_at_epoch, cache_features)
        self.network = FineTuneNetwork(
            self.num_outputs, backbone, weights, weights_file, head_sizes, head_dropout,
            activation, freeze_backbone, channels_last,
        )  # fmt: skip

    # ------------------------------------------------------------------- the network's parts
    @property
    def backbone(self) -> nn.Module:
        return self.network.backbone

    @property
    def head(self) -> nn.Module:
        return self.network.head

    @property
    def feature_dim(self) -> int:
        return self.network.feature_dim

    @property
    def backbone_frozen(self) -> bool:
        return self.network.backbone_frozen

    @property
    def preprocessing_spec(self) -> str | None:
        """The pretrained weights whose image transforms the data should use (an image
        DataModule adopts them): a torchvision weights entry or ``timm/<model>.<tag>``; ``None``
        for a randomly initialised backbone."""
        return self.network.preprocessing_spec

    def weights_path(self) -> Path | None:
        """See :meth:`dlzoo.networks.finetune.FineTuneNetwork.weights_path`."""
        return self.network.weights_path()

    def load_pretrained(self) -> FineTuneClassifier:
        """Load the backbone's pretrained weights (file, hub cache, or download); returns ``self``."""
        hp = self.hparams
        if not self.network.load_pretrained():
            rank_zero_warn(
                f"FineTuneClassifier: {hp.backbone} has random weights (weights=None)"
                + (", and it is frozen: only the head learns" if hp.freeze_backbone else "")
            )
        self._pretrained_done = True
        return self

    @classmethod
    def data_settings(cls, init_args: Mapping[str, Any]) -> dict[str, Any]:
        """Images prepared as the backbone's pretrained weights were trained; with
        ``cache_features``, a DataModule that can cache them."""
        settings = cached_features_setting(init_args)
        # no backbone, or a bad weights name: the constructor's error says which
        with contextlib.suppress(KeyError, ValueError):
            settings["preprocessing"] = preprocessing_spec(
                init_args["backbone"], init_args.get("weights"), init_args.get("weights_file")
            )
        return settings

    # ----------------------------------------------------------------------------- training
    def setup(self, stage: str) -> None:
        self.connect_data(self.trainer.datamodule)  # a no-op when the command already did

    def configure_callbacks(self) -> list[pl.Callback]:
        return backbone_callbacks(self)

    def on_fit_start(self) -> None:
        super().on_fit_start()  # the pretrained weights; logs the parameter counts
        start_backbone_fit(self, self.backbone, ("images",))

    def extract_features(self, images: torch.Tensor) -> torch.Tensor:
        """Backbone features ``(N, feature_dim)`` of a batch of images."""
        return self.network.extract_features(images)
