"""A pretrained transformer encoder fine-tuned for a text task (book chapter 8): a
:class:`~dlzoo.networks.text_encoder.TextEncoderNetwork` trained by
:class:`~dlzoo.models.base.TaskModule`.

The encoder's configuration and its tokenizer travel in every checkpoint (plain data), so
validate, predict, export and serve work from the checkpoint alone after the encoder's folder
is gone. Its pretrained weights load when a run starts without a checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import lightning.pytorch as pl
import torch

from dlzoo.data.preprocess.subword import SubwordTokenizer
from dlzoo.models.base import TaskModule
from dlzoo.models.finetune import (
    backbone_callbacks,
    cached_features_setting,
    check_backbone_options,
    start_backbone_fit,
)
from dlzoo.models.optimization import OptimizerName, SchedulerName, configure_optimizers
from dlzoo.networks.layers import Activation
from dlzoo.networks.text_encoder import (
    PooledFeatures,
    Pooling,
    TextEncoderNetwork,
    encoder_config,
)
from dlzoo.registry import register_model

#: where a checkpoint holds the encoder's configuration (plain data)
CONFIG_KEY = "text_encoder_config"
#: where a checkpoint holds the digest of the encoder's tokenizer
TOKENIZER_KEY = "text_encoder_tokenizer_sha256"
#: parameters AdamW does not decay (BERT's recipe): biases and normalisation scales
_NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")


@register_model("text_encoder")  # also "bert" (registry.ALIASES)
class TextEncoderClassifier(TaskModule):
    """A pretrained BERT-family encoder (Hugging Face ``transformers``) with a new head, for
    every text task: binary, multiclass, multi-label, regression.

    Fine-tuned as practitioners do: AdamW, a linear warm-up then linear decay per step,
    optionally layer-wise learning-rate decay, and gradient clipping (the Trainer's
    ``gradient_clip_val``); or frozen, with the features computed once (``cache_features``),
    or unfrozen after some epochs (Lightning's ``BackboneFinetuning``). The text DataModule
    tokenises with the encoder's own tokenizer (``tokenizer: model``).

    Args:
        backbone: the encoder: a folder written by ``save_pretrained`` (``config.json``,
            ``model.safetensors``, ``tokenizer.json``) or a Hugging Face hub id (read from the
            hub cache; offline works). Needed to start a fit, not to use its checkpoints.
        num_classes: 2 for binary (one logit), more for multiclass; labels of a multi-label task.
        pooling: ``mean`` over the real tokens (how sentence-transformers checkpoints were
            trained) or ``cls`` (the first token).
        head_sizes: hidden widths of the new head (none: one linear layer).
        head_dropout: dropout on the pooled features and in the head.
        activation: head non-linearity.
        freeze_backbone: train the head only.
        unfreeze_at_epoch: with a frozen backbone, unfreeze it at this epoch, its learning rate
            starting at ``unfreeze_lr_ratio`` times ``lr``.
        unfreeze_lr_ratio: see ``unfreeze_at_epoch``.
        cache_features: run the frozen encoder over the train and val texts once and train the
            head on those features.
        feature_runtime: what computes cached features on CPU: ``onnxruntime`` (checked against
            torch on the first batch; torch where they differ), ``torch``, or ``auto``
            (ONNX Runtime on CPU, torch on a GPU).
        max_length: the DataModule's ``max_length`` (it supplies it): refused above the
            encoder's positions.
        layer_lr_decay: layer-wise learning-rate decay: the head learns at ``lr``, encoder
            layer ``i`` of ``L`` at ``lr * layer_lr_decay ** (L - i)``, the embeddings lowest;
            1.0: one learning rate.
        warmup_fraction: the ``linear`` schedule's warm-up, as a share of all steps.
        optimizer: as :class:`TaskModule`; AdamW here.
        lr: learning rate (of the head; see ``layer_lr_decay``).
        weight_decay: AdamW's decoupled weight decay (not on biases and norm scales).
        lr_scheduler: ``linear`` (warm-up, then down to 0 per step), or any of
            :class:`TaskModule`'s.
        **kwargs: the task and L1 settings of :class:`TaskModule`.
    """

    def __init__(
        self,
        backbone: str,
        num_classes: int = 2,
        pooling: Pooling = "mean",
        head_sizes: Sequence[int] = (),
        head_dropout: float = 0.1,
        activation: Activation = "gelu",
        freeze_backbone: bool = False,
        unfreeze_at_epoch: int | None = None,
        unfreeze_lr_ratio: float = 0.1,
        cache_features: bool = False,
        feature_runtime: Literal["auto", "onnxruntime", "torch"] = "auto",
        max_length: int | None = None,
        layer_lr_decay: float = 1.0,
        warmup_fraction: float = 0.1,
        optimizer: OptimizerName = "adamw",
        lr: float = 5e-5,
        weight_decay: float = 0.01,
        lr_scheduler: SchedulerName = "linear",
        **kwargs: Any,
    ) -> None:
        super().__init__(
            network=None, num_classes=num_classes, optimizer=optimizer, lr=lr,
            weight_decay=weight_decay, lr_scheduler=lr_scheduler, **kwargs,
        )  # fmt: skip
        check_backbone_options(freeze_backbone, unfreeze_at_epoch, cache_features)
        if not 0.0 < layer_lr_decay <= 1.0:
            raise ValueError(f"layer_lr_decay must be in (0, 1], got {layer_lr_decay}")
        if not 0.0 <= warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {warmup_fraction}")
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', got {pooling!r}")
        self.encoder_config: dict[str, Any] | None = None
        #: the digest of the tokenizer the encoder was trained with (its folder's, or the
        #: checkpoint's): a DataModule with another is refused
        self.tokenizer_sha256: str | None = None
        self._missing = ""
        try:
            config = encoder_config(backbone)
        except FileNotFoundError as err:
            # a checkpoint brings the configuration (on_load_checkpoint); a fit needs the folder
            self._missing = str(err)
        else:
            self.build_network(config)
            try:
                self.tokenizer_sha256 = SubwordTokenizer.from_source(backbone).digest
            except FileNotFoundError:
                self.tokenizer_sha256 = None  # a folder without tokenizer.json

    def build_network(self, config: dict[str, Any]) -> None:
        """Build the network from the encoder's configuration (no weights are read)."""
        hp = self.hparams
        self.encoder_config = config
        self.network = TextEncoderNetwork(
            config, self.num_outputs, hp.pooling, hp.head_sizes, hp.head_dropout,
            hp.activation, hp.freeze_backbone,
        )  # fmt: skip
        positions = self.network.max_positions
        if hp.max_length and positions and hp.max_length > positions:
            raise ValueError(
                f"max_length={hp.max_length} is more than the {positions} positions of "
                f"{hp.backbone}: set the DataModule's max_length to {positions} or less"
            )

    # ------------------------------------------------------------------- the network's parts
    @property
    def backbone(self) -> torch.nn.Module:
        return self._built().backbone

    @property
    def head(self) -> torch.nn.Module:
        return self._built().head

    @property
    def backbone_frozen(self) -> bool:
        return self._built().backbone_frozen

    def _built(self) -> TextEncoderNetwork:
        if self.network is None:
            raise FileNotFoundError(self._missing)
        return self.network

    def load_pretrained(self) -> TextEncoderClassifier:
        """Load the encoder's pretrained weights; returns ``self``."""
        self._built().load_pretrained(self.hparams.backbone)
        self._pretrained_done = True
        return self

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[CONFIG_KEY] = self.encoder_config
        checkpoint[TOKENIZER_KEY] = self.tokenizer_sha256

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        config = checkpoint.get(CONFIG_KEY)
        if config is None:
            raise ValueError(
                f"the checkpoint holds no {CONFIG_KEY!r}: not a TextEncoderClassifier's"
            )
        if self.network is None or config != self.encoder_config:
            self.build_network(config)  # the checkpoint's encoder, whatever the folder holds now
        self.tokenizer_sha256 = checkpoint.get(TOKENIZER_KEY)

    @classmethod
    def data_settings(cls, init_args: Mapping[str, Any]) -> dict[str, Any]:
        """Texts tokenised by the encoder's own tokenizer (``tokenizer: model``); with
        ``cache_features``, a DataModule that can cache the encoder's features."""
        settings = cached_features_setting(init_args)
        if isinstance(backbone := init_args.get("backbone"), str):
            settings["tokenizer"] = backbone
        return settings

    # ----------------------------------------------------------------------------- training
    def setup(self, stage: str) -> None:
        """The Trainer's text DataModule must tokenise as the encoder was trained."""
        from dlzoo.data.text import TextClassificationDataModule

        datamodule = self._trainer.datamodule if self._trainer is not None else None
        if not isinstance(datamodule, TextClassificationDataModule):
            return
        if not datamodule.is_subword:
            raise ValueError(
                "TextEncoderClassifier reads its encoder's own subwords: set the text "
                "DataModule's tokenizer to model (--data.init_args.tokenizer model)"
            )
        digest = datamodule.tokenizer_sha256
        if self.tokenizer_sha256 and digest != self.tokenizer_sha256:
            raise ValueError(
                f"the DataModule's tokenizer (sha256 {digest[:12]}) is not the one this "
                f"encoder was trained with ({self.tokenizer_sha256[:12]}): use the encoder's "
                "own (tokenizer: model) or the checkpoint's DataModule"
            )

    def configure_callbacks(self) -> list[pl.Callback]:
        return backbone_callbacks(self)

    def on_fit_start(self) -> None:
        super().on_fit_start()  # the pretrained weights; logs the parameter counts
        start_backbone_fit(self, PooledFeatures(self._built()), ("tokens", "lengths"))

    def extract_features(
        self, tokens: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Pooled encoder features ``(N, hidden)`` of a batch of token ids."""
        return self._built().extract_features(tokens, lengths)

    def forward(self, *inputs: Any) -> torch.Tensor:
        """Logits of ``tokens, lengths``, or of cached ``BackboneFeatures``."""
        return self._built()(*inputs)

    def configure_optimizers(self) -> Any:
        """AdamW over the trainable parameters: no weight decay on biases and norm scales,
        and with ``layer_lr_decay`` < 1 a learning rate per encoder layer."""
        hp, network = self.hparams, self._built()
        groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
        top = network.num_layers + 1
        for name, parameter in self.named_parameters():
            if not parameter.requires_grad:
                continue
            depth = (
                network.layer_of(name.removeprefix("network.backbone."))
                if (name.startswith("network.backbone."))
                else top
            )
            scale = hp.layer_lr_decay ** (top - depth)
            decay = 0.0 if any(name.endswith(n) for n in _NO_DECAY) else hp.weight_decay
            groups.setdefault((scale, decay), []).append(parameter)
        param_groups = [
            {"params": params, "lr": hp.lr * scale, "weight_decay": decay}
            for (scale, decay), params in sorted(groups.items(), key=lambda kv: kv[0])
        ]
        return configure_optimizers(self, param_groups)
