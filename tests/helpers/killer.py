"""A callback that kills its own process, to test resuming after a crash."""

import os
import signal

from lightning.pytorch.callbacks import Callback


class KillAtEpoch(Callback):
    """SIGKILL the process when epoch ``epoch`` (0-based) starts: no cleanup, like a real crash."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)


class KillAtBatch(Callback):
    """SIGKILL the process before training batch ``batch`` of epoch ``epoch``: a crash mid-epoch."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), signal.SIGKILL)
