"""The optimiser and learning-rate schedule a :class:`~dlzoo.models.base.TaskModule`'s
hyperparameters name (``optimizer``, ``lr``, ``weight_decay``, ``momentum``, ``lr_scheduler``,
``lr_step_size``, ``lr_gamma``; ``warmup_fraction`` of the pretrained encoders)."""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

import lightning.pytorch as pl
import torch

OptimizerName = Literal["adam", "adamw", "sgd", "rmsprop"]
SchedulerName = Literal["none", "cosine", "step", "plateau", "onecycle", "linear"]

_OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
}


def configure_optimizers(
    module: pl.LightningModule, groups: list[dict[str, Any]] | None = None
) -> Any:
    """The optimiser and schedule named by a module's hyperparameters (see TaskModule);
    ``groups``: parameter groups of their own (learning rates per layer), else every
    trainable parameter at ``lr``."""
    hp = module.hparams
    if hp.optimizer not in _OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(_OPTIMIZERS)}, got {hp.optimizer!r}")
    kwargs: dict[str, Any] = {"lr": hp.lr, "weight_decay": hp.weight_decay}
    if hp.optimizer in ("sgd", "rmsprop"):
        kwargs["momentum"] = hp.momentum
    # frozen parameters (a fine-tuned backbone) stay out; an unfreezing callback adds them later
    trainable = groups or [p for p in module.parameters() if p.requires_grad]
    optimizer = _OPTIMIZERS[hp.optimizer](trainable, **kwargs)
    if hp.lr_scheduler == "none":
        return optimizer
    sched = torch.optim.lr_scheduler
    interval, monitor = "epoch", None
    if hp.lr_scheduler == "cosine":
        if not module.trainer.max_epochs or module.trainer.max_epochs < 1:
            raise ValueError("lr_scheduler='cosine' needs trainer.max_epochs")
        scheduler = sched.CosineAnnealingLR(optimizer, T_max=module.trainer.max_epochs)
    elif hp.lr_scheduler == "step":
        scheduler = sched.StepLR(optimizer, step_size=hp.lr_step_size, gamma=hp.lr_gamma)
    elif hp.lr_scheduler == "plateau":
        scheduler = sched.ReduceLROnPlateau(optimizer, factor=hp.lr_gamma, patience=hp.lr_step_size)
        monitor = "val_loss"
    elif hp.lr_scheduler == "linear":
        total = max(1, int(module.trainer.estimated_stepping_batches))
        warmup = int(total * float(hp.get("warmup_fraction", 0.0)))
        scheduler = sched.LambdaLR(optimizer, partial(_warmup_then_linear, warmup, total))
        interval = "step"
    else:  # onecycle
        scheduler = sched.OneCycleLR(
            optimizer, max_lr=hp.lr, total_steps=module.trainer.estimated_stepping_batches
        )
        interval = "step"
    config = {"scheduler": scheduler, "interval": interval}
    if monitor:
        config["monitor"] = monitor
    return {"optimizer": optimizer, "lr_scheduler": config}


def _warmup_then_linear(warmup: int, total: int, step: int) -> float:
    """The ``linear`` schedule's factor at ``step``: up over ``warmup`` steps, then down to 0."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    return max(0.0, (total - step) / max(1, total - warmup))


__all__ = ["OptimizerName", "SchedulerName", "configure_optimizers"]
