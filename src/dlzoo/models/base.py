"""TaskModule: trains any network for a row of the task table (loss, metrics, optimiser, predictions).

A network is a plain ``nn.Module`` returning logits (raw scores, or standardised values for
regression): one of :mod:`dlzoo.networks` or a user's own. ``TaskModule(network, task=...)``
trains it; a registered dlzoo model (``FeedForwardNet`` ...) is a TaskModule that builds its
family's network from its own arguments with ``self.num_outputs`` outputs. Which loss, metrics
and predictions the logits mean is the row of :data:`dlzoo.tasks.TASKS` named by the ``task``
hyperparameter (or the class's ``fixed_task``: the autoencoder's ``reconstruction``).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torchmetrics import MeanMetric

# OptimizerName and configure_optimizers were defined here: importable from base still
from dlzoo.models.optimization import (
    _OPTIMIZERS,
    OptimizerName,
    SchedulerName,
    configure_optimizers,
)
from dlzoo.registry import MODELS, init_arguments
from dlzoo.tasks import (
    RegressionLoss,
    Task,
    TaskName,
    classification_task,
    get_task,
    member_mean_loss,
    member_mean_outputs,
)


class TaskModule(pl.LightningModule):
    """A network trained for one task of :data:`dlzoo.tasks.TASKS`: binary or multiclass
    classification, multi-label classification, (multi-target) regression, or reconstruction
    (a subclass with ``fixed_task = "reconstruction"``, whose targets are its inputs).

    Logs ``{train,val,test}_loss`` and the task's metrics once per epoch (torchmetrics,
    synchronised across DDP ranks): ``acc, precision, recall, f1, auroc`` for classes;
    ``exact_match, f1_micro, f1_macro, hamming, auroc`` for labels; ``mse, rmse, mae, mape, r2``
    (in the target's own units) for regression. The hyperparameters of the subclass and of this
    base are saved together by the one ``save_hyperparameters()`` call below: Lightning collects
    the arguments of every ``__init__`` in the ``super()`` chain, so configs and checkpoints
    round-trip.

    Args:
        network: the network to train: any ``nn.Module`` whose ``forward`` takes a batch's
            input (a tensor, or ``tokens, lengths``) and returns ``(N, num_outputs)`` logits
            (see :attr:`num_outputs`). The registered models pass ``None`` and build their
            own (so the command offers them no ``network`` argument); a subclass of the old
            style may define ``forward`` itself instead. Not saved
            in the hyperparameters: a checkpoint holds its weights, the run's ``config.yaml``
            names its class and arguments.
        num_classes: classes (binary: 2), or labels of a multi-label task.
        task: the task; ``None``: ``binary`` for 2 classes, else ``multiclass`` (the CLI links
            the DataModule's task here).
        num_targets: regression outputs (the CLI links the DataModule's).
        target_names: names of the regression targets or labels, for metric names.
        target_transform: the DataModule's fitted regression target scaling (``mean``,
            ``scale``, ``log`` per target); predictions and metrics are in the target's units.
        regression_loss: ``mse``, ``huber`` or ``l1`` (on standardised targets).
        pos_weight: multi-label: weight of positive examples per label (rare labels).
        threshold: multi-label: the probability from which a label is predicted.
        optimizer: ``adam``, ``adamw``, ``sgd`` (with ``momentum``) or ``rmsprop``. For anything
            else, the CLI's ``--optimizer`` / ``--lr_scheduler`` take any torch class and win.
        lr: learning rate.
        weight_decay: L2 penalty, applied by the optimiser (the book's L2 regularisation).
        momentum: SGD/RMSprop momentum.
        lr_scheduler: ``none``; ``cosine`` (to 0 over ``max_epochs``); ``step`` (times
            ``lr_gamma`` every ``lr_step_size`` epochs); ``plateau`` (times ``lr_gamma`` after
            ``lr_step_size`` epochs without a lower ``val_loss``); ``onecycle`` (per step);
            ``linear`` (per step: up from 0 over the first ``warmup_fraction`` of the steps, a
            model's argument, then down to 0: how pretrained transformers are fine-tuned).
        lr_step_size: see ``lr_scheduler``.
        lr_gamma: see ``lr_scheduler``.
        l1_lambda: L1 penalty on weight matrices and kernels (not biases or norm scales) added to
            the training loss (the book's L1 regularisation).
    """

    #: a task every instance of the class has, known before one is built (the CLI's checkpoint
    #: monitor); None: the ``task`` argument decides
    fixed_task: str | None = None
    #: the network returns ``(N, k, num_outputs)``: ``k`` ensemble members (TabM), trained on
    #: the mean of their losses and predicting with the mean of their predictions
    ensemble: bool = False

    def __init__(
        self,
        network: nn.Module | None = None,
        num_classes: int = 2,
        task: TaskName | None = None,
        num_targets: int = 1,
        target_names: list[str] | None = None,
        target_transform: dict[str, Any] | None = None,
        regression_loss: RegressionLoss = "mse",
        pos_weight: list[float] | None = None,
        threshold: float = 0.5,
        optimizer: OptimizerName = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        lr_scheduler: SchedulerName = "none",
        lr_step_size: int = 10,
        lr_gamma: float = 0.1,
        l1_lambda: float = 0.0,
    ) -> None:
        super().__init__()
        if network is not None and type(self) in MODELS.values():
            raise ValueError(
                f"{type(self).__name__} builds its network from its own arguments: train a "
                "network of your own as TaskModule(network=...) (class_path: "
                "dlzoo.models.TaskModule)"
            )
        self.save_hyperparameters(ignore=["network"])
        keep_own_hparams(self)
        self.network = network
        # checkpoints written before the networks were modules of their own name the weights
        # without the `network.` prefix (`net.0.weight`, not `network.net.0.weight`)
        self.register_load_state_dict_pre_hook(_prefix_network_keys)
        task_row = self.task  # an unknown task name fails here
        if task_row.classification and num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        if task_row.name == "multilabel" and num_classes < 1:
            raise ValueError(f"a multi-label task needs at least one label, got {num_classes}")
        if task_row.name == "regression" and num_targets < 1:
            raise ValueError(f"num_targets must be at least 1, got {num_targets}")
        if task_row.name == "reconstruction" and self.fixed_task != "reconstruction":
            raise ValueError("task='reconstruction' is the autoencoder's: --model autoencoder")
        if self.fixed_task:
            refuse_task_settings(self)
        if regression_loss not in RegressionLoss.__args__:
            raise ValueError(
                f"regression_loss must be one of {RegressionLoss.__args__}, got {regression_loss!r}"
            )
        if pos_weight is not None and len(pos_weight) != num_classes:
            raise ValueError(f"pos_weight needs one weight per label ({num_classes})")
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        if optimizer not in _OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {sorted(_OPTIMIZERS)}, got {optimizer!r}")
        if lr_scheduler not in SchedulerName.__args__:
            raise ValueError(
                f"lr_scheduler must be one of {SchedulerName.__args__}, got {lr_scheduler!r}"
            )
        metrics = task_row.metrics(self.hparams)
        self.train_metrics = metrics.clone(prefix="train_")
        self.val_metrics = metrics.clone(prefix="val_")
        self.test_metrics = metrics.clone(prefix="test_")
        # epoch-mean losses, weighted by batch size (the last batch may be smaller)
        self.train_loss = MeanMetric()
        self.val_loss = MeanMetric()
        self.test_loss = MeanMetric()
        self.train_l1 = MeanMetric()  # the L1 penalty term, when l1_lambda > 0

    def load_state_dict(self, state_dict: Mapping[str, Any], *args: Any, **kwargs: Any) -> Any:
        """``nn.Module.load_state_dict``, with weights that do not fit said in one line."""
        try:
            return super().load_state_dict(state_dict, *args, **kwargs)
        except RuntimeError as err:
            details = [line.strip() for line in str(err).splitlines()[1:] if line.strip()]
            first = details[0] if details else str(err).splitlines()[0]
            more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
            raise ValueError(
                f"the checkpoint's weights do not fit {type(self).__name__} as configured: "
                f"{first}{more}; use the run's own config.yaml with its checkpoint"
            ) from None

    @classmethod
    def data_settings(cls, init_args: Mapping[str, Any]) -> dict[str, Any]:
        """What the data must know of a model of these arguments before it is read, as the
        arguments of :meth:`dlzoo.data.base.DataModule.connect` (no model is built): the image
        transforms of pretrained weights, a pretrained encoder's tokenizer. Nothing here."""
        return {}

    def connect_data(self, datamodule: Any) -> None:
        """Hand this model's :meth:`data_settings` to ``datamodule`` (a dlzoo DataModule; others
        are left alone). The dlzoo command does this before the data is read; a run started
        from Python without it gets it at setup (datasets made before are made again)."""
        from dlzoo.data.base import DataModule

        if isinstance(datamodule, DataModule):
            datamodule.connect(**self.data_settings(self.hparams))

    @property
    def task(self) -> Task:
        """The row of the task table this model is trained for."""
        if self.fixed_task:
            return get_task(self.fixed_task)
        return get_task(self.hparams.get("task") or classification_task(self.hparams.num_classes))

    @property
    def num_outputs(self) -> int:
        """Width of the network's output: 1 for binary classification, ``num_classes`` for
        multiclass and multi-label, ``num_targets`` for regression."""
        return self.task.output_width(self.hparams)

    @property
    def is_binary(self) -> bool:
        return self.task.name == "binary"

    # ----------------------------------------------------------------------------- helpers
    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # keep the loss in fp32 under bf16/16-mixed
        if self.ensemble:
            return member_mean_loss(self.task, logits.float(), target, self.hparams)
        return self.task.loss(logits.float(), target, self.hparams)

    def outputs(self, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits as predictions: probabilities and labels, or values in the target's units
        (of an ensemble: the mean of its members')."""
        if self.ensemble:
            return member_mean_outputs(self.task, logits.float(), self.hparams)
        return self.task.outputs(logits.float(), self.hparams)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Classifiers: ``(N,)`` probability of class 1 if binary, else ``(N, C)``."""
        return self.outputs(logits)["probs"]

    def forward(self, *inputs: Any) -> torch.Tensor:
        """The network's logits."""
        if self.network is None:
            raise NotImplementedError(
                f"{type(self).__name__} has no network: pass TaskModule(network=...)"
            )
        return self.network(*inputs)

    def logits(self, x: Any) -> torch.Tensor:
        """What the task's loss and outputs take: ``forward``'s output, for a model input (a
        tensor, or ``(tokens, lengths)``)."""
        return call_with(self, x)

    def exportable_network(self) -> nn.Module:
        """A copy of the network that ONNX and TorchScript can trace (the exporter owns it);
        most networks are exportable as they are."""
        if self.network is None:  # an old-style subclass that is its own network
            return _SelfAsNetwork(copy.deepcopy(self))
        return copy.deepcopy(self.network)

    def predictor(self) -> nn.Module:
        """What ``dlzoo export`` traces: a plain module computing :meth:`predict_outputs` from a
        copy of the network and the task's output head, with no LightningModule inside."""
        return Predictor(
            self.exportable_network(), self.task.name, dict(self.hparams), self.ensemble
        )

    def predict_outputs(self, x: Any) -> dict[str, torch.Tensor]:
        """``predict_step``'s outputs for a model input (a tensor, or ``(tokens, lengths)``)."""
        return self.outputs(self.logits(x))

    def predict_proba(self, x: Any) -> torch.Tensor:
        return self.probabilities(self.logits(x))

    def l1_penalty(self) -> torch.Tensor:
        weights = [p for p in self.parameters() if p.requires_grad and p.ndim > 1]
        return sum((w.abs().sum() for w in weights), torch.zeros((), device=self.device))

    def _step(self, batch: Any, stage: str) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        target = x if self.task.target_is_input else batch[1]
        logits = self.logits(x)
        loss = self.loss(logits, target)
        scores = self.task.scores(self.outputs(logits.detach()), target, self.hparams)
        getattr(self, f"{stage}_metrics").update(*scores)
        getattr(self, f"{stage}_loss").update(loss.detach(), weight=len(target))
        return loss

    def _log_epoch(self, stage: str) -> None:
        # Loss and metrics are accumulated every step and computed once here. Calling self.log
        # every step instead (with Metric objects, as Lightning allows) costs more than the
        # training step itself on small tabular batches: AUROC keeps every prediction, and
        # Lightning walks them on each call. See BENCHMARKS.md for the measured difference.
        metrics, loss = getattr(self, f"{stage}_metrics"), getattr(self, f"{stage}_loss")
        if not loss.update_called:
            return
        values = {f"{stage}_loss": loss.compute(), **metrics.compute()}  # synced across DDP ranks
        metrics.reset()
        loss.reset()
        if stage == "train" and self.train_l1.update_called:
            values["train_l1"] = self.train_l1.compute()
            self.train_l1.reset()
        shown = {"train_loss", "val_loss", *self.task.shown}
        for name, value in values.items():
            # already global: sync_dist only keeps Lightning's DDP bookkeeping quiet
            self.log(name, value, prog_bar=name in shown, sync_dist=True)

    # ------------------------------------------------------------------------- Lightning
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = self._step(batch, "train")
        l1_lambda = self.hparams.get("l1_lambda", 0.0)  # a subclass may not offer it
        if l1_lambda > 0:
            penalty = l1_lambda * self.l1_penalty()
            self.train_l1.update(penalty.detach())
            loss = loss + penalty
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "test")

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> dict:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.predict_outputs(x)

    def configure_optimizers(self) -> Any:
        return configure_optimizers(self)

    # ------------------------------------------------------------- pretrained initialisation
    # Pretrained weights (ImageNet backbones, word vectors) are loaded when a run starts, after
    # Lightning has restored any checkpoint, and only if none was: loading a fine-tuned checkpoint
    # must never need the pretrained file again (or the internet to fetch it).
    _pretrained_done: bool = False

    def load_pretrained(self) -> TaskModule:
        """Load pretrained weights into the network, if the model has any; returns ``self``.

        Runs on its own at the start of fit/validate/test/predict unless a checkpoint was
        restored; call it directly to use a freshly built model outside a Trainer.
        """
        self._pretrained_done = True
        return self

    def ensure_pretrained(self) -> None:
        """Load pretrained weights unless they or a checkpoint's already were."""
        if not self._pretrained_done:
            self.load_pretrained()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._pretrained_done = True  # the checkpoint's weights replace any pretrained ones

    def on_fit_start(self) -> None:
        self.ensure_pretrained()
        log_parameter_counts(self)

    def on_validation_start(self) -> None:
        self.ensure_pretrained()

    def on_test_start(self) -> None:
        self.ensure_pretrained()

    def on_predict_start(self) -> None:
        self.ensure_pretrained()


def log_parameter_counts(module: pl.LightningModule) -> None:
    """One line instead of Lightning's module table (which lists metric objects with 0 FLOPs)."""
    sized = [
        p for p in module.parameters() if not isinstance(p, nn.parameter.UninitializedParameter)
    ]
    total = sum(p.numel() for p in sized)
    trainable = sum(p.numel() for p in sized if p.requires_grad)
    name = type(module).__name__
    if module.hparams.get("backbone"):
        name += f"({module.hparams.backbone})"
    rank_zero_info(f"{name}: {total:,} parameters, {trainable:,} trainable")


#: the arguments of :class:`TaskModule` that choose a task or tune its loss and outputs: a model
#: of a fixed task (the autoencoder's ``reconstruction``) refuses them
TASK_SETTINGS = (
    "task",
    "num_classes",
    "num_targets",
    "target_names",
    "target_transform",
    "regression_loss",
    "pos_weight",
    "threshold",
)


def refuse_task_settings(module: TaskModule) -> None:
    """Raise if a model of a fixed task was given a task setting other than its default (the
    dlzoo command does not hand it the data's classes or targets)."""
    defaults = inspect.signature(TaskModule.__init__).parameters
    for name in TASK_SETTINGS:
        value = module.hparams.get(name, defaults[name].default)
        if value is not None and value != defaults[name].default:
            raise ValueError(
                f"{type(module).__name__}'s task is always {module.fixed_task}: "
                f"{name}={value!r} does not apply"
            )


def keep_own_hparams(module: pl.LightningModule) -> None:
    """Drop saved hyperparameters the module's class does not take.

    The CLI hands every model the sizes its data describes (``num_features``, ``vocab_size``
    ...), and LightningCLI records each in the hyperparameters, also where the class lacks the
    argument; a checkpoint holding one could not rebuild the model (``load_from_checkpoint``).
    The checkpoint saves ``hparams``; the logged copy (``hparams_initial``) may keep them.
    """
    accepted = init_arguments(type(module))
    for key in [k for k in module.hparams if k not in accepted and not k.startswith("_")]:
        del module.hparams[key]


def call_with(module: nn.Module, x: Any) -> Any:
    """``module(*x)`` when a batch's input is a tuple (tokens, lengths), else ``module(x)``."""
    return module(*x) if isinstance(x, (tuple, list)) else module(x)


class Predictor(nn.Module):
    """A network and a task's output head: inputs in, ``predict_step``'s outputs out."""

    def __init__(
        self,
        network: nn.Module,
        task: str,
        hparams: Mapping[str, Any],
        ensemble: bool = False,
    ) -> None:
        super().__init__()
        self.network, self.task, self.hparams = network, get_task(task), dict(hparams)
        self.ensemble = ensemble

    def forward(self, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.network(*inputs).float()
        if self.ensemble:
            return member_mean_outputs(self.task, logits, self.hparams)
        return self.task.outputs(logits, self.hparams)


class _SelfAsNetwork(nn.Module):
    """An old-style TaskModule subclass (its own ``forward``, no ``network``) as a network."""

    def __init__(self, module: TaskModule) -> None:
        super().__init__()
        self.module = module

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.module.logits(inputs if len(inputs) > 1 else inputs[0])


def _prefix_network_keys(
    module: TaskModule, state_dict: dict[str, Any], prefix: str, *args: Any
) -> None:
    if module.network is None:
        return
    own = {prefix + "network." + key for key in module.network.state_dict()}
    for key in [k for k in state_dict if k.startswith(prefix)]:
        moved = prefix + "network." + key[len(prefix) :]
        if key not in own and moved in own:
            state_dict[moved] = state_dict.pop(key)


#: the name of :class:`TaskModule` before it learnt tasks other than classification
ClassificationModule = TaskModule
